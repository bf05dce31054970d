fn main() -> std::process::ExitCode {
    agentsync::main()
}

// Parsing pages and mapping records allocate and free many small values;
// mimalloc does that far faster than the system allocator. Built without
// transparent huge pages (`no_thp`): with them, a 1M-user plan spent seconds
// of kernel time on huge-page faults and a small run's RSS doubled.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
