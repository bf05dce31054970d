#!/usr/bin/env bash
# Validates the deployment files without a cluster:
#   - every manifest in deploy/kubernetes/ against the Kubernetes API schemas
#     of the versions below (strict: unknown fields are errors);
#   - kustomization.yaml: its resources exist, and every manifest is listed
#     there unless it is a one-off Job (job-*.yaml) or an example (*.example.yaml);
#   - the TOML inside each ConfigMap parses (and passes `agentsync check` when
#     AGENTSYNC_BIN names a binary);
#   - the Dockerfile, with hadolint.
# The tools come from PyPI into tests/ops/.venv (git-ignored), once.
# The last line is "N passed, N failed"; the exit status is 1 when any failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The oldest Kubernetes release still commonly run, and the newest with schemas.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)
manifests_dir=deploy/kubernetes
venv=tests/ops/.venv
requirements=tests/ops/requirements.txt

if ! cmp -s "$requirements" "$venv/requirements.installed" 2>/dev/null; then
    echo "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$venv/requirements.installed"
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -n "${2:-}" ] && sed 's/^/     /' <<<"$2"
    return 0
}

shopt -s nullglob
for file in "$manifests_dir"/*.yaml; do
    [ "$(basename "$file")" = kustomization.yaml ] && continue
    for version in "${KUBERNETES_VERSIONS[@]}"; do
        # A kind without a schema is only a warning to the tool: fail on it too.
        if out=$("$venv/bin/kubernetes-validate" --strict -k "$version" "$file" 2>&1) \
            && ! grep -qE '^(WARN|ERROR)' <<<"$out" && grep -q ' passed ' <<<"$out"; then
            pass "$file (Kubernetes $version)"
        else
            fail "$file (Kubernetes $version)" "$out"
        fi
    done
done

# The kustomization and the configs inside the ConfigMaps.
check_py=$(cat <<'PY'
import pathlib, subprocess, sys, tempfile, tomllib, os
import yaml

check, directory = sys.argv[1], pathlib.Path(sys.argv[2])
if check == "kustomization":
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = kustomization.get("resources") or []
    problems = [f"{name}: listed but missing" for name in listed if not (directory / name).is_file()]
    for path in sorted(directory.glob("*.yaml")):
        name = path.name
        if name == "kustomization.yaml" or name.startswith("job-") or name.endswith(".example.yaml"):
            continue
        if name not in listed:
            problems.append(f"{name}: not in resources")
    sys.exit("\n".join(problems) or None)
else:
    path = pathlib.Path(check)
    problems = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                problems.append(f"{key}: {err}")
                continue
            binary = os.environ.get("AGENTSYNC_BIN")
            if binary:
                with tempfile.TemporaryDirectory() as tmp:
                    config = pathlib.Path(tmp) / key
                    config.write_text(text)
                    run = subprocess.run([binary, "check", "--config", str(config)],
                                         capture_output=True, text=True)
                    if run.returncode != 0:
                        problems.append(f"{key}: agentsync check: {run.stderr.strip()}")
    sys.exit("\n".join(problems) or None)
PY
)
if out=$("$venv/bin/python" -c "$check_py" kustomization "$manifests_dir" 2>&1); then
    pass "$manifests_dir/kustomization.yaml (resources)"
else
    fail "$manifests_dir/kustomization.yaml (resources)" "$out"
fi
for file in "$manifests_dir"/configmap-*.yaml; do
    if out=$("$venv/bin/python" -c "$check_py" "$file" "$manifests_dir" 2>&1); then
        pass "$file (the TOML config${AGENTSYNC_BIN:+, agentsync check})"
    else
        fail "$file (the TOML config${AGENTSYNC_BIN:+, agentsync check})" "$out"
    fi
done

if out=$("$venv/bin/hadolint" --no-color Dockerfile 2>&1); then
    pass "Dockerfile (hadolint)"
else
    fail "Dockerfile (hadolint)" "$out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
