#!/usr/bin/env bash
# agentsync against SCIM servers written elsewhere: scim2-server (PyPI) and a
# scimmy + scimmy-routers app (npm).
#
#   bash tests/interop/run.sh                 # every server
#   bash tests/interop/run.sh scimmy          # one server (scim2-server | scimmy)
#   AGENTSYNC_BIN=target/debug/agentsync bash tests/interop/run.sh
#
# Installs the servers into git-ignored folders here (once; again when the pins
# change), builds agentsync unless AGENTSYNC_BIN names a binary, runs checks.py,
# which starts and stops every server on 127.0.0.1, and exits non-zero when a
# check failed. The last line of the output is "N passed, N failed".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/interop/common.sh
source "$here/common.sh"

for tool in python3 node npm; do
    command -v "$tool" >/dev/null || { echo "interop: needs $tool on PATH" >&2; exit 2; }
done

servers=()
for name in "$@"; do
    case "$name" in
        scim2-server | scimmy) servers+=(--server "$name") ;;
        *) echo "interop: unknown server '$name' (scim2-server | scimmy)" >&2; exit 2 ;;
    esac
done

# scim2-server in a virtualenv, pinned by requirements.txt; the copy of the
# pins inside the venv says what it holds.
venv="$here/.venv"
if ! cmp -s "$here/requirements.txt" "$venv/.interop-requirements.txt" 2>/dev/null; then
    echo "interop: installing scim2-server into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check --quiet --require-virtualenv \
        -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.interop-requirements.txt"
fi

# scimmy, scimmy-routers and express from package-lock.json.
npm_install_once "$here/scimmy" scimmy

agentsync_bin

work="$here/.work"
rm -rf "$work"
mkdir -p "$work"

# checks.py stops its servers however it ends; the trap passes an interrupt on
# and waits for that clean-up.
python3 "$here/checks.py" --agentsync "$bin" --work "$work" "${servers[@]}" &
checks=$!
trap 'kill -TERM "$checks" 2>/dev/null; wait "$checks" || true; exit 130' INT TERM
wait "$checks"
