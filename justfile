# Everyday recipes. Each is a plain command too (see README); `just` is optional.

# Run the tests (the project's one test command).
test:
    cargo test --locked

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --check
    cargo clippy --locked --all-targets -- -D warnings

# Everything CI runs.
ci:
    bash .ci/run

# The end-to-end demo against the bundled mock.
demo:
    cargo run --locked -- demo

# Serve the bundled mock on 127.0.0.1:8787.
mock:
    cargo run --release -- mock

# The performance benchmark (see docs/performance.md); BENCH_USERS=2000 for a quick run.
bench:
    bash bench/run.sh
