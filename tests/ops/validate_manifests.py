"""The checks of validate-manifests.sh, run with the tools of tests/ops/.venv.

Each check prints "ok   WHAT" or "FAIL WHAT" with the reasons indented below;
the last line is "N passed, N failed" and the exit status is 1 when any failed.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

# The oldest Kubernetes release still commonly run, and the newest with schemas.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
MANIFESTS = pathlib.Path("deploy/kubernetes")
DOCKERFILE = pathlib.Path("Dockerfile")
HADOLINT = pathlib.Path(sys.executable).parent / "hadolint"
PROMETHEUS = pathlib.Path("deploy/prometheus")
SYSTEMD = pathlib.Path("deploy/systemd")

results = {"passed": 0, "failed": 0}


def report(what, problems):
    if problems:
        results["failed"] += 1
        print(f"FAIL {what}")
        for problem in problems:
            for line in str(problem).splitlines():
                print(f"     {line}")
    else:
        results["passed"] += 1
        print(f"ok   {what}")


def documents(path):
    """The YAML documents of a file, or the reason it cannot be read."""
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None], None
    except (OSError, yaml.YAMLError) as err:
        return [], f"not YAML: {err}"


def schema_problems(docs, version):
    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            problems.append(f"{name}: {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for apiVersion {doc.get('apiVersion')} "
                            f"kind {doc.get('kind')} in Kubernetes {version}")
        except Exception as err:  # a document that is no resource at all
            problems.append(f"{name}: {type(err).__name__}: {err}")
    return problems


def kustomization_problems():
    """Every listed resource exists; every manifest is listed unless it is a
    one-off Job (job-*.yaml) or an example (*.example.yaml)."""
    docs, error = documents(MANIFESTS / "kustomization.yaml")
    if error:
        return [error]
    listed = (docs[0] if docs else {}).get("resources") or []
    problems = [f"{name}: listed but missing" for name in listed if not (MANIFESTS / name).is_file()]
    for path in sorted(MANIFESTS.glob("*.yaml")):
        name = path.name
        if name == "kustomization.yaml" or name.startswith("job-") or name.endswith(".example.yaml"):
            continue
        if name not in listed:
            problems.append(f"{name}: not in resources")
    return problems


def secret_names(table):
    """The environment variables a config reads its secrets from: every
    `*_env` value, `{{env.NAME}}` in any string, and the Talkdesk preset's
    TALKDESK_CLIENT_ID and TALKDESK_CLIENT_SECRET."""
    names = {"TALKDESK_CLIENT_ID", "TALKDESK_CLIENT_SECRET"}
    stack = [table]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                if k.endswith("_env") and isinstance(v, str):
                    names.add(v)
                stack.append(v)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            names.update(re.findall(r"\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", value))
    return names


def config_problems(docs):
    """The TOML configs inside ConfigMaps parse, and pass `agentsync check`
    when AGENTSYNC_BIN names the binary."""
    binary = os.environ.get("AGENTSYNC_BIN")
    problems = []
    for doc in docs:
        if doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                problems.append(f"{key}: {err}")
                continue
            if binary:
                # The Secret's variables, as placeholders: `check` reads them.
                env = dict(os.environ)
                env.update({name: "placeholder" for name in secret_names(tomllib.loads(text))})
                with tempfile.TemporaryDirectory() as tmp:
                    config = pathlib.Path(tmp) / key
                    config.write_text(text)
                    run = subprocess.run([binary, "check", "--config", str(config)],
                                         capture_output=True, text=True, env=env)
                    if run.returncode != 0:
                        problems.append(f"{key}: agentsync check: {run.stderr.strip()}")
    return problems


def promtool_problems(command, path):
    """`promtool check rules FILE` or `promtool test rules FILE`."""
    run = subprocess.run([os.environ["PROMTOOL"], command, "rules", str(path)],
                         capture_output=True, text=True)
    return [] if run.returncode == 0 else [(run.stdout + run.stderr).strip()]


def systemd_problems(units):
    """`systemd-analyze verify` of the units, with their ExecStart= binary
    replaced by this build of agentsync (or /bin/true): verify refuses a unit
    whose program is missing. Any warning it prints is a problem too."""
    binary = os.environ.get("AGENTSYNC_BIN")
    program = str(pathlib.Path(binary).resolve()) if binary else "/bin/true"
    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for unit in units:
            copy = pathlib.Path(tmp) / unit.name
            copy.write_text(unit.read_text().replace("/usr/local/bin/agentsync", program))
            copies.append(str(copy))
        run = subprocess.run(["systemd-analyze", "verify", "--man=no", *copies],
                             capture_output=True, text=True)
    output = (run.stdout + run.stderr).strip()
    return [output or f"exit {run.returncode}"] if run.returncode != 0 or output else []


def main():
    manifests = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")
    for path in manifests:
        docs, error = documents(path)
        for version in KUBERNETES_VERSIONS:
            problems = [error] if error else schema_problems(docs, version)
            if not error and not docs:
                problems = ["no resource in the file"]
            report(f"{path} (Kubernetes {version})", problems)

    report(f"{MANIFESTS}/kustomization.yaml (resources)", kustomization_problems())

    checked = "the TOML config" + (", agentsync check" if os.environ.get("AGENTSYNC_BIN") else "")
    for path in sorted(MANIFESTS.glob("configmap-*.yaml")):
        docs, error = documents(path)
        report(f"{path} ({checked})", [error] if error else config_problems(docs))

    lint = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    report(f"{DOCKERFILE} (hadolint)", [] if lint.returncode == 0 else [lint.stdout + lint.stderr])

    rules = sorted(p for p in PROMETHEUS.glob("*.yaml") if not p.name.endswith(".test.yaml"))
    if not rules:
        report(f"{PROMETHEUS} (alert rules)", ["no rule file"])
    for path in rules:
        report(f"{path} (promtool check rules)", promtool_problems("check", path))
    for path in sorted(PROMETHEUS.glob("*.test.yaml")):
        report(f"{path} (promtool test rules)", promtool_problems("test", path))

    units = sorted(p for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))
    if not units:
        report(f"{SYSTEMD} (units)", ["no unit file"])
    elif shutil.which("systemd-analyze"):
        for unit in units:
            report(f"{unit} (systemd-analyze verify)", systemd_problems([unit] + [
                u for u in units if u.stem == unit.stem and u != unit]))
    else:
        print(f"skip {SYSTEMD}: systemd-analyze is not installed")

    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
