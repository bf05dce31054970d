fn main() -> std::process::ExitCode {
    agentsync::main()
}
