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
# shellcheck source=tests/interop/common.sh
source "$here/common.sh"

for tool in python3 node npm; do
    command -v "$tool" >/dev/null || { echo "interop: needs $tool on PATH" >&2; exit 2; }
done

npm_install_once "$here/webhooks" standardwebhooks

agentsync_bin

work="$here/.work/events"
rm -rf "$work"
mkdir -p "$work"

python3 "$here/events.py" --agentsync "$bin" --work "$work" &
checks=$!
trap 'kill -TERM "$checks" 2>/dev/null; wait "$checks" || true; exit 130' INT TERM
wait "$checks"
