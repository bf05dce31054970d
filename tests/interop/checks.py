#!/usr/bin/env python3
"""agentsync against SCIM servers written elsewhere: scim2-server (PyPI) and a
scimmy + scimmy-routers app (npm). Driven by run.sh, which installs them.

Each scenario starts a fresh directory server and agentsync's bundled mock as
the source, seeds the directory through its own SCIM API, runs the agentsync
binary and reads the result back through the same API. Prints one row per
check and server, then "N passed, N failed". Standard library only.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# The source: the mock's users 1..12, {"id": "N", "email": "user+N@talkdesk.com"}.
SOURCE_USERS = 12
# The directory before each scenario: (userName, externalId). Emails of the
# source are matched case-insensitively, so one is seeded in capitals.
SEED = [
    ("user+1@talkdesk.com", None),  # link
    ("USER+2@TalkDesk.com", None),  # link, matched regardless of case
    ("user+3@talkdesk.com", None),  # link
    ("user+4@talkdesk.com", "old-4"),  # update: a stale ID
    ("user+5@talkdesk.com", "old-5"),  # update
    ("user+6@talkdesk.com", "6"),  # unchanged
    ("user+7@talkdesk.com", "7"),  # unchanged
    ("user+8@talkdesk.com", "8"),  # unchanged
    ("gone+1@talkdesk.com", "gone-1"),  # not in the source: kept (unlink_missing = false)
    ("gone+2@talkdesk.com", None),  # not in the source, never linked
]
EXPECTED_SUMMARY = {
    "link": 3, "update": 2, "unlink": 0, "unchanged": 3,
    "unmatched": 4, "conflict": 0, "contested": 0, "failed": 0,
}
RERUN_SUMMARY = {"link": 0, "update": 0, "unlink": 0, "unchanged": 8, "failed": 0}
AGENTSYNC_TIMEOUT = 60
HTTP_TIMEOUT = 10
START_TIMEOUT = 30


class Failed(Exception):
    """A check's expectation that did not hold; the message says what and why."""


# -- processes ------------------------------------------------------------------

LIVE = []  # every process started here, stopped on any way out


class Process:
    """A background server with its output in a log file, in its own process
    group so that stopping it also stops anything it started."""

    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True,
        )
        LIVE.append(self)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, what, probe, timeout=START_TIMEOUT):
        """Polls `probe()` until it returns a value; fails when the process
        exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"{self.name} exited with {self.proc.returncode} before {what}:\n"
                             + tail(self.log_text()))
            found = probe()
            if found is not None:
                return found
            time.sleep(0.1)
        raise Failed(f"{self.name}: no {what} within {timeout} s:\n" + tail(self.log_text()))

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.log.close()
        if self in LIVE:
            LIVE.remove(self)


def stop_all():
    for p in list(LIVE):
        p.stop()


def url_in_log(process, pattern):
    def probe():
        m = re.search(pattern, process.log_text())
        return m.group(1) if m else None
    return probe


def answers(url):
    def probe():
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return True if resp.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None
    return probe


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(text, lines=15):
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) or "    (empty)"


# -- the servers ------------------------------------------------------------------

class Directory:
    """A running SCIM server: its base URL and what it can do."""

    def __init__(self, process, base_url, can_interfere):
        self.process = process
        self.base_url = base_url
        self.can_interfere = can_interfere


class Scim2Server:
    name = "scim2-server"
    can_interfere = False

    def start(self, work, patch=True):
        argv = [os.path.join(HERE, ".venv", "bin", "scim2-server"), "--hostname", "127.0.0.1"]
        if not patch:
            config = os.path.join(work, "no-patch-config.json")
            with open(config, "w") as f:
                json.dump(no_patch_config(), f)
            argv += ["--service-provider-config", config]
        # The command prints the port it was given, so a free one is chosen
        # here; another process may take it first, hence the retries.
        for attempt in range(3):
            port = free_port()
            process = Process(self.name, argv + ["--port", str(port)],
                              os.path.join(work, f"scim2-server.{attempt}.log"))
            base = f"http://127.0.0.1:{port}/v2"
            try:
                process.wait_for("an answer on " + base, answers(base + "/ServiceProviderConfig"))
                return Directory(process, base, self.can_interfere)
            except Failed:
                process.stop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def no_patch_config():
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": False},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": 1000},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
    }


class ScimmyServer:
    name = "scimmy"
    can_interfere = True

    def start(self, work, patch=True):
        argv = ["node", os.path.join(HERE, "scimmy", "server.js"), "--port", "0"]
        if not patch:
            argv.append("--no-patch")
        process = Process(self.name, argv, os.path.join(work, "scimmy.log"))
        base = process.wait_for("its address", url_in_log(process, r"listening on (http://\S+)"))
        process.wait_for("an answer on " + base, answers(base + "/ServiceProviderConfig"))
        return Directory(process, base, self.can_interfere)


def start_mock(agentsync, work):
    process = Process("agentsync mock", [agentsync, "mock", "--addr", "127.0.0.1:0",
                                         "--users", str(SOURCE_USERS), "--agents", "0"],
                      os.path.join(work, "mock.log"))
    base = process.wait_for("its address", url_in_log(process, r"listening on (http://\S+)"))
    process.wait_for("an answer", answers(base + "/users/formatted?page=1"))
    return process, base.rstrip("/")


# -- SCIM through the server's own API -----------------------------------------------

def http(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/scim+json")
    if data is not None:
        req.add_header("Content-Type", "application/scim+json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode("utf-8", "replace")


def expect(status, want, what):
    if status[0] != want:
        raise Failed(f"{what}: HTTP {status[0]} (wanted {want}): {status[1]}")
    return status[1]


def list_users(directory):
    users, start = [], 1
    for _ in range(100):  # pages of 50: far more than any scenario holds
        page = expect(http("GET", f"{directory.base_url}/Users?startIndex={start}&count=50"),
                      200, "list users")
        got = page.get("Resources") or []
        users += got
        start += len(got)
        if not got or len(users) >= page["totalResults"]:
            return users
    raise Failed("list users: more than 100 pages")


def seed(directory):
    """Creates the SEED users; returns {userName: id}."""
    ids = {}
    for user_name, external_id in SEED:
        local = user_name.split("@")[0]
        user = {
            "schemas": [USER_SCHEMA],
            "userName": user_name,
            "displayName": f"Agent {local}",
            "name": {"givenName": "Agent", "familyName": local},
            "emails": [{"value": user_name, "type": "work", "primary": True}],
            "active": True,
        }
        if external_id is not None:
            user["externalId"] = external_id
        created = expect(http("POST", f"{directory.base_url}/Users", user), 201,
                         f"seed: POST /Users {user_name}")
        ids[user_name] = created["id"]
    return ids


def replace_user(directory, user_id, change):
    """Changes a user as another client would: read it, PUT it back changed."""
    url = f"{directory.base_url}/Users/{user_id}"
    user = expect(http("GET", url), 200, f"GET {url}")
    user.pop("meta", None)
    user.update(change)
    expect(http("PUT", url, user), 200, f"PUT {url}")


def source_id(user_name):
    m = re.fullmatch(r"user\+(\d+)@talkdesk\.com", user_name.lower())
    return m.group(1) if m and int(m.group(1)) <= SOURCE_USERS else None


def expected_after_sync():
    """{userName: externalId} once the plan is applied."""
    return {name: source_id(name) or ext for name, ext in SEED}


def check_directory(s, want, renamed=None):
    """The directory holds exactly the SEED users, each with its externalId of
    `want` and its other attributes as seeded (userName as in `renamed`)."""
    renamed = renamed or {}
    users = {u["id"]: u for u in list_users(s.directory)}
    wrong = []
    for user_name, _ in SEED:
        user = users.get(s.ids[user_name])
        if user is None:
            wrong.append(f"{user_name}: missing")
            continue
        if user.get("externalId") != want[user_name]:
            wrong.append(f"{user_name}: externalId {user.get('externalId')!r}, "
                         f"wanted {want[user_name]!r}")
        local = user_name.split("@")[0]
        if (user.get("userName") != renamed.get(user_name, user_name)
                or (user.get("name") or {}).get("familyName") != local
                or user.get("displayName") != f"Agent {local}"
                or user.get("active") is not True
                or [e.get("value") for e in user.get("emails") or []] != [user_name]):
            wrong.append(f"{user_name}: other attributes changed: {json.dumps(user)}")
    if len(users) != len(SEED):
        wrong.append(f"{len(users)} users in the directory, wanted {len(SEED)}")
    if wrong:
        raise Failed("directory read back:\n" + "\n".join("    " + w for w in wrong))


# -- agentsync ------------------------------------------------------------------------

class Agentsync:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.stderr = ""  # of the last run
        self.env = dict(os.environ, NO_COLOR="1",
                        AGENTSYNC_STATE_DIR=os.path.join(work, "state"))

    def config(self, mock_url, directory, update):
        path = os.path.join(self.work, "agentsync.toml")
        update_line = f'update = "{update}"\n' if update else ""
        with open(path, "w") as f:
            f.write(f"""name = "interop"

[source]
base_url = "{mock_url}"
path = "/users/formatted"
query = {{ page = "{{{{page}}}}" }}
records = ".users"

[pagination]
kind = "page"
total = ".total"
count = ".count"

[mapping]
jq = '{{id: .id, email: .email}}'

[sink]
kind = "scim"
base_url = "{directory.base_url}"
page_size = 3
{update_line}
[sync]
unlink_missing = false
""")
        self.env["AGENTSYNC_CONFIG"] = path
        return path

    def run(self, *args, want=0):
        """Runs agentsync; returns its JSON report. Fails on another exit code."""
        argv = [self.binary, *args]
        try:
            done = subprocess.run(argv, env=self.env, cwd=self.work, capture_output=True,
                                  timeout=AGENTSYNC_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Failed(f"`{shown(argv)}` still running after {AGENTSYNC_TIMEOUT} s")
        out = done.stdout.decode("utf-8", "replace")
        err = done.stderr.decode("utf-8", "replace")
        self.stderr = err
        if done.returncode != want:
            raise Failed(f"`{shown(argv)}` exited {done.returncode}, wanted {want}; stderr:\n"
                         + tail(err) + report_errors(out))
        if "--output" not in args or want == 2:
            return None  # exit 2 is an error before any run: no report
        try:
            return json.loads(out)
        except ValueError:
            raise Failed(f"`{shown(argv)}` printed no JSON report:\n" + tail(out))


def report_errors(out):
    """What a JSON report on stdout says went wrong, else the end of stdout."""
    try:
        report = json.loads(out)
    except ValueError:
        return "\n  stdout:\n" + tail(out, 8) if out.strip() else ""
    errors = [f"{c.get('email')}: {c.get('status')}: {c.get('error')}"
              for c in report.get("changes") or [] if c.get("error")]
    summary = f"\n  report summary: {json.dumps(report.get('summary'))}"
    return summary + "".join(f"\n    {e}" for e in errors[:3])


def shown(argv):
    return " ".join([os.path.basename(argv[0]), *argv[1:]])


def summary_is(report, want, what):
    got = report.get("summary") or {}
    # `contested` counts only when the binary reports it; the other counts must be there.
    diff = {k: (got.get(k), v) for k, v in want.items()
            if got.get(k) != v and not (k == "contested" and k not in got)}
    if diff:
        raise Failed(f"{what}: summary {json.dumps(got)}; differs in "
                     + ", ".join(f"{k}={g} (wanted {w})" for k, (g, w) in diff.items()))


def expected_changes(ids, status):
    rows = set()
    for user_name, ext in SEED:
        new = source_id(user_name)
        if new is None or new == ext:
            continue
        rows.add(("link" if ext is None else "update", user_name.lower(), ids[user_name],
                  ext, new, status))
    return rows


def change_rows(report):
    return {(c.get("action"), str(c.get("email", "")).lower(), c.get("agent_id"),
             c.get("old_external_id"), c.get("new_external_id"), c.get("status"))
            for c in report.get("changes") or [] if c.get("action") != "unchanged"}


def changes_are(report, want, what):
    got = change_rows(report)
    if got != want:
        lines = [f"    missing: {r}" for r in sorted(want - got, key=str)]
        lines += [f"    unexpected: {r}" for r in sorted(got - want, key=str)]
        raise Failed(f"{what}: the change list differs:\n" + "\n".join(lines))


# -- scenarios ---------------------------------------------------------------------------

class Scenario:
    """One fresh directory and mock, seeded; stopped when the scenario ends."""

    def __init__(self, server, agentsync_bin, work_root, name, patch=True):
        self.work = os.path.join(work_root, server.name, re.sub(r"\W+", "-", name).strip("-"))
        os.makedirs(self.work, exist_ok=True)
        self.server, self.patch, self.bin = server, patch, agentsync_bin
        self.processes = []

    def __enter__(self):
        try:
            self.directory = self.server.start(self.work, patch=self.patch)
            self.processes.append(self.directory.process)
            mock, self.mock_url = start_mock(self.bin, self.work)
            self.processes.append(mock)
            self.ids = seed(self.directory)
            self.agentsync = Agentsync(self.bin, self.work)
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        for p in self.processes:
            p.stop()


def sync_mode_checks(mode):
    """Checks 1-4: the plan, the apply, the rerun with one `update` mode."""
    def register(record):
        def plan(s):
            path = s.agentsync.config(s.mock_url, s.directory, mode)
            report = s.agentsync.run("--config", path, "--dry-run", "--output", "json")
            if report.get("dry_run") is not True:
                raise Failed(f"dry_run is {report.get('dry_run')!r}")
            summary_is(report, EXPECTED_SUMMARY, "plan")
            changes_are(report, expected_changes(s.ids, "planned"), "plan")
            agents = (report.get("sink") or {}).get("agents")
            if agents != len(SEED):
                raise Failed(f"sink.agents is {agents}, wanted {len(SEED)}")
            check_directory(s, dict(SEED))  # a dry run writes nothing

        def apply(s):
            path = s.agentsync.config(s.mock_url, s.directory, mode)
            report = s.agentsync.run("--config", path, "--output", "json")
            summary_is(report, EXPECTED_SUMMARY, "apply")
            changes_are(report, expected_changes(s.ids, "applied"), "apply")
            check_directory(s, expected_after_sync())

        def rerun(s):
            path = s.agentsync.config(s.mock_url, s.directory, mode)
            report = s.agentsync.run("--config", path, "--dry-run", "--output", "json")
            summary_is(report, RERUN_SUMMARY, "rerun")
            changes_are(report, set(), "rerun")

        record(f"plan ({mode})", plan)
        record(f"apply ({mode})", apply)
        record(f"rerun is a no-op ({mode})", rerun)
    return register


def saved_plan_race(record):
    """Check 5: changes made between the saved plan and its apply are kept."""
    def check(s):
        path = s.agentsync.config(s.mock_url, s.directory, "put")
        plan = os.path.join(s.work, "plan.json")
        s.agentsync.run("sync", "--config", path, "--dry-run", "--out", plan,
                        "--output", "json")
        # Another client, after the plan: links user+1 itself, renames user+4.
        replace_user(s.directory, s.ids["user+1@talkdesk.com"], {"externalId": "concurrent-1"})
        replace_user(s.directory, s.ids["user+4@talkdesk.com"],
                     {"userName": "renamed+4@talkdesk.com"})
        report = s.agentsync.run("apply", plan, "--output", "json", want=3)
        stale = {s.ids["user+1@talkdesk.com"], s.ids["user+4@talkdesk.com"]}
        rows = {(c.get("agent_id"), c.get("status")) for c in report.get("changes") or []
                if c.get("action") != "unchanged"}
        want = {(i, "stale" if i in stale else "applied")
                for _, _, i, _, _, _ in expected_changes(s.ids, "applied")}
        if rows != want:
            raise Failed(f"apply of the saved plan: statuses {sorted(rows)}, wanted {sorted(want)}")
        after = expected_after_sync()
        after["user+1@talkdesk.com"] = "concurrent-1"
        after["user+4@talkdesk.com"] = "old-4"
        check_directory(s, after, renamed={"user+4@talkdesk.com": "renamed+4@talkdesk.com"})
    record("saved plan: changed agents stale", check)


def write_race(mode):
    """Check 5 at the moment of the write: only If-Match can keep the other
    client's change (scimmy only: its server changes the user as the write arrives)."""
    def register(record):
        def check(s):
            path = s.agentsync.config(s.mock_url, s.directory, mode)
            target = s.ids["user+1@talkdesk.com"]
            expect(http("POST", s.directory.base_url.rsplit("/scim/v2", 1)[0] + "/test/interfere",
                        {"id": target, "externalId": "concurrent-1"}), 204, "arm the interference")
            try:
                report = s.agentsync.run("--config", path, "--output", "json", want=3)
            except Failed as e:
                now = expect(http("GET", f"{s.directory.base_url}/Users/{target}"), 200,
                             "read user+1 back").get("externalId")
                raise Failed(f"{e}\n  user+1's externalId is now {now!r}; the other client "
                             "set 'concurrent-1' as the write arrived") from None
            statuses = {c.get("agent_id"): c.get("status") for c in report.get("changes") or []}
            if statuses.get(target) not in ("failed", "stale"):
                raise Failed(f"user+1 changed under the write is {statuses.get(target)!r}, "
                             "wanted failed or stale")
            others = {i: st for i, st in statuses.items() if i != target and st != "applied"}
            if others:
                raise Failed(f"other changes not applied: {others}")
            after = expected_after_sync()
            after["user+1@talkdesk.com"] = "concurrent-1"
            check_directory(s, after)
        record(f"If-Match at the write ({mode})", check)
    return register


def no_patch_refused(record):
    """Check 6: `update = "patch"` against a directory without PATCH: exit 2,
    nothing fetched, nothing written. Exit 2 is an error, not a run: it says
    why on stderr and prints no report."""
    def check(s):
        def source_pages():  # counted since the mock started (its start-up probe reads one)
            return expect(http("GET", f"{s.mock_url}/_mock/stats"), 200,
                          "the mock's stats")["source_pages"]
        path = s.agentsync.config(s.mock_url, s.directory, "patch")
        before = source_pages()
        s.agentsync.run("--config", path, "--output", "json", want=2)
        if "does not support PATCH" not in s.agentsync.stderr:
            raise Failed("exit 2 without saying why; stderr:\n" + tail(s.agentsync.stderr))
        pages = source_pages() - before
        if pages != 0:
            raise Failed(f"exit 2, but {pages} source pages were fetched (wanted none)")
        check_directory(s, dict(SEED))
    record("no PATCH: patch exits 2", check)


def no_patch_auto(record):
    """Check 6: `update = "auto"` against a directory without PATCH uses PUT."""
    def check(s):
        path = s.agentsync.config(s.mock_url, s.directory, "auto")
        report = s.agentsync.run("--config", path, "--output", "json")
        summary_is(report, EXPECTED_SUMMARY, "apply")
        check_directory(s, expected_after_sync())
    record("no PATCH: auto uses PUT", check)


# (scenario, needs PATCH on the server, needs the interference hook)
SCENARIOS = [
    ("put", sync_mode_checks("put"), True, False),
    ("patch", sync_mode_checks("patch"), True, False),
    ("auto", sync_mode_checks("auto"), True, False),
    ("saved plan", saved_plan_race, True, False),
    ("write race put", write_race("put"), True, True),
    ("write race patch", write_race("patch"), True, True),
    ("no patch refused", no_patch_refused, False, False),
    ("no patch auto", no_patch_auto, False, False),
]
SERVERS = {s.name: s for s in (Scim2Server(), ScimmyServer())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agentsync", required=True, help="the agentsync binary")
    parser.add_argument("--work", required=True, help="a directory for configs and logs")
    parser.add_argument("--server", action="append", choices=sorted(SERVERS),
                        help="run against this server only (repeatable)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    names = args.server or list(SERVERS)
    started = time.monotonic()
    results = {}  # (check, server) -> None or the failure
    order = []
    for _, scenario, _, _ in SCENARIOS:
        scenario(lambda check, fn: order.append(check))
    try:
        for name in names:
            server = SERVERS[name]
            for label, scenario, patch, interfere in SCENARIOS:
                if interfere and not server.can_interfere:
                    continue
                checks = []
                scenario(lambda check, fn: checks.append((check, fn)))
                print(f"[{name}] {label}", file=sys.stderr, flush=True)
                try:
                    with Scenario(server, args.agentsync, args.work, label, patch) as s:
                        for check, fn in checks:
                            try:
                                fn(s)
                                results[(check, name)] = None
                            except Exception as e:  # noqa: BLE001 - any error fails the check
                                results[(check, name)] = why(e)
                except Exception as e:  # noqa: BLE001
                    # The servers did not start or did not take the seed:
                    # every check of the scenario fails with that reason.
                    for check, _ in checks:
                        results[(check, name)] = f"set-up: {why(e)}"
    finally:
        stop_all()

    print(f"checks took {time.monotonic() - started:.0f} s", file=sys.stderr)
    report(names, order, results)
    return 1 if any(results.values()) else 0


def why(error):
    return str(error) if isinstance(error, Failed) else f"{type(error).__name__}: {error}"


def report(names, order, results):
    failures = [(c, n, why) for (c, n), why in results.items() if why]
    for check, name, why in failures:
        print(f"--- FAIL {name}: {check}\n  {why}\n")
    width = max(len(c) for c in order) if order else 5
    cols = [max(len(n), 4) for n in names]
    print("  ".join(["check".ljust(width)] + [n.ljust(w) for n, w in zip(names, cols)]))
    for check in order:
        if not any((check, n) in results for n in names):
            continue
        cells = []
        for n, w in zip(names, cols):
            cell = "-" if (check, n) not in results else ("FAIL" if results[(check, n)] else "PASS")
            cells.append(cell.ljust(w))
        print("  ".join([check.ljust(width)] + cells).rstrip())
    passed = sum(1 for why in results.values() if not why)
    print(f"{passed} passed, {len(results) - passed} failed")


if __name__ == "__main__":
    sys.exit(main())
