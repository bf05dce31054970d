fn main() -> std::process::ExitCode {
    agentsync::main()
}

// Parsing pages and mapping records allocate and free many small values;
// mimalloc does that far faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
