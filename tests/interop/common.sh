# What the interop scripts share; sourced by run.sh and events.sh, which set
# `here` (this folder) and `root` (the repository) first.

# npm_install_once DIR WHAT: the packages of DIR/package-lock.json into
# DIR/node_modules, once, and again only when the lock file changes (the copy
# of it inside node_modules says what is installed).
npm_install_once() {
    local dir=$1 what=$2
    local modules="$dir/node_modules"
    if ! cmp -s "$dir/package-lock.json" "$modules/.interop-package-lock.json" 2>/dev/null; then
        echo "interop: installing $what into $modules" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
        cp "$dir/package-lock.json" "$modules/.interop-package-lock.json"
    fi
}

# agentsync_bin: the binary AGENTSYNC_BIN names, else a release build made
# here; sets `bin`, or exits 2 when there is none.
agentsync_bin() {
    if [[ -n "${AGENTSYNC_BIN:-}" ]]; then
        bin="$(cd "$root" && realpath "$AGENTSYNC_BIN")"
    else
        (cd "$root" && cargo build --locked --release --quiet)
        bin="$root/target/release/agentsync"
    fi
    [[ -x "$bin" ]] || { echo "interop: no agentsync binary at $bin" >&2; exit 2; }
}
