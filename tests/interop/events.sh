#!/usr/bin/env bash
# `agentsync listen` receiving events signed by the standardwebhooks package
# (npm, pinned in webhooks/package-lock.json), against the bundled mock.
#
#   bash tests/interop/events.sh
#   AGENTSYNC_BIN=target/debug/agentsync bash tests/interop/events.sh
#
# Installs the package into webhooks/node_modules (git-ignored; once, again
# when the pins change), builds agentsync unless AGENTSYNC_BIN names a binary,
# runs events.py, which starts and stops the mock and the listener on
# 127.0.0.1, and exits non-zero when a check failed. The last line of the
# output is "N passed, N failed".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in python3 node npm; do
    command -v "$tool" >/dev/null || { echo "interop: needs $tool on PATH" >&2; exit 2; }
done

modules="$here/webhooks/node_modules"
if ! cmp -s "$here/webhooks/package-lock.json" "$modules/.interop-package-lock.json" 2>/dev/null; then
    echo "interop: installing standardwebhooks into $modules" >&2
    (cd "$here/webhooks" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    cp "$here/webhooks/package-lock.json" "$modules/.interop-package-lock.json"
fi

if [[ -n "${AGENTSYNC_BIN:-}" ]]; then
    bin="$(cd "$root" && realpath "$AGENTSYNC_BIN")"
else
    (cd "$root" && cargo build --locked --release --quiet)
    bin="$root/target/release/agentsync"
fi
[[ -x "$bin" ]] || { echo "interop: no agentsync binary at $bin" >&2; exit 2; }

work="$here/.work/events"
rm -rf "$work"
mkdir -p "$work"

python3 "$here/events.py" --agentsync "$bin" --work "$work" &
checks=$!
trap 'kill -TERM "$checks" 2>/dev/null; wait "$checks" || true; exit 130' INT TERM
wait "$checks"
