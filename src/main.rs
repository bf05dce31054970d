fn main() -> std::process::ExitCode {
    // mimalloc hands memory that threads freed back to the OS only after
    // `purge_delay` ms (1 000 by default): a 1M-user plan, whose reading
    // threads free the users just before the changes are built, then peaked
    // at 437-448 MB in 5 runs of 6 and at 369 MB in every run with 10 ms
    // (docs/performance.md, W3L), for about 0.1 s more wall time.
    // SAFETY: sets one of mimalloc's options by its documented index; it
    // takes any value and is read again each time memory is purged.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    agentsync::main()
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3 alike); the
/// binding names the options around it but not this one.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

// Parsing pages and mapping records allocate and free many small values;
// mimalloc does that far faster than the system allocator. Built without
// transparent huge pages (`no_thp`): with them, a 1M-user plan spent seconds
// of kernel time on huge-page faults and a small run's RSS doubled.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
