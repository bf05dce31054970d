#!/usr/bin/env python3
"""`agentsync listen` receiving events signed by an implementation written
elsewhere: the standardwebhooks package (npm), through webhooks/sign.js.
Driven by events.sh, which installs it.

Starts agentsync's bundled mock (time clock and agent directory) and links its
agents with a sync of configs/punch.toml, then starts `agentsync listen` with
that same config and a fresh secret, and sends Talkdesk-style user.login /
user.logout events signed by the library. Reads the punches back from the
mock. Prints one row per check, then "N passed, N failed". Standard library
only (besides node for the signatures).
"""

import argparse
import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from checks import Failed, Process, answers, stop_all, tail, url_in_log

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, "configs", "punch.toml")
MOCK_DEFAULT = "http://127.0.0.1:8787"
SIGN = os.path.join(HERE, "webhooks", "sign.js")
SECRET_ENV = "AGENTSYNC_WEBHOOK_SECRET"
# The mock's agent user+3@talkdesk.com is linked to the time clock's user "3".
AGENT = "user+3@talkdesk.com"
EXTERNAL_ID = "3"
DELIVERY_TIMEOUT = 30
HTTP_TIMEOUT = 10


def event(event_id, kind, email=AGENT):
    """A Talkdesk user.login / user.logout event, as the bytes sent."""
    body = {
        "id": event_id,
        "type": kind,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"account_id": "acme-account", "user_id": "td-" + event_id,
                 "user_email": email},
    }
    return json.dumps(body).encode()


def sign(secret, msg_id, timestamp, body):
    """The webhook-signature header value the library computes."""
    done = subprocess.run(["node", SIGN, secret, msg_id, str(timestamp)], input=body,
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        raise Failed("sign.js failed: " + done.stderr.decode("utf-8", "replace"))
    return done.stdout.decode()


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def get_json(url):
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
        return json.loads(resp.read())


def get_text(url):
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


class Suite:
    """The mock, a synced directory and the listener; stopped at the end."""

    def __init__(self, agentsync, work):
        self.bin, self.work = agentsync, work
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.env = dict(os.environ, NO_COLOR="1", AGENTSYNC_STATE_DIR=os.path.join(work, "state"))
        self.env[SECRET_ENV] = self.secret
        self.processes = []

    def start(self):
        mock = Process("agentsync mock", [self.bin, "mock", "--addr", "127.0.0.1:0",
                                          "--users", "12", "--agents", "12"],
                       os.path.join(self.work, "mock.log"))
        self.processes.append(mock)
        self.mock = mock.wait_for("its address",
                                  url_in_log(mock, r"listening on (http://\S+)")).rstrip("/")
        mock.wait_for("an answer", answers(self.mock + "/_mock/stats"))
        with open(CONFIG) as f:
            text = f.read()
        if MOCK_DEFAULT not in text:
            raise Failed(f"{CONFIG} does not point at {MOCK_DEFAULT}")
        self.config = os.path.join(self.work, "punch.toml")
        with open(self.config, "w") as f:
            f.write(text.replace(MOCK_DEFAULT, self.mock))
        sync = subprocess.run([self.bin, "--config", self.config, "--quiet"], env=self.env,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        if sync.returncode != 0:
            raise Failed(f"the sync exited {sync.returncode}:\n"
                         + tail(sync.stderr.decode("utf-8", "replace")))
        listen = Process("agentsync listen", [self.bin, "listen", "--config", self.config,
                                              "--addr", "127.0.0.1:0"],
                         os.path.join(self.work, "listen.log"), env=self.env)
        self.processes.append(listen)
        self.listen_process = listen
        base = listen.wait_for("its address",
                               url_in_log(listen, r"listening on (http://\S+)")).rstrip("/")
        listen.wait_for("/healthz", answers(base + "/healthz"))
        self.listen = base
        path = re.search(r'^path\s*=\s*"([^"]+)"', text[text.index("[listen]"):], re.M)
        self.events_url = base + (path.group(1) if path else "/events")

    def stop(self):
        for p in self.processes:
            p.stop()

    def send(self, event_id, body, msg_id=None, timestamp=None, tamper=None):
        """Signs `body` with the library and posts it (changed by `tamper`
        after signing, when given): (status, answer)."""
        msg_id = msg_id or "msg_" + event_id
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = sign(self.secret, msg_id, timestamp, body)
        sent = tamper(body) if tamper else body
        return post(self.events_url, sent, {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        })

    def punches(self):
        return get_json(self.mock + "/_mock/punches")["punches"]

    def punch_requests(self):
        return get_json(self.mock + "/_mock/stats")["punches"]

    def wait_for_punches(self, n):
        """Polls the time clock until it recorded `n` punches (bounded)."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            got = self.punches()
            if len(got) >= n:
                return got
            if self.listen_process.proc.poll() is not None:
                raise Failed(f"the listener exited {self.listen_process.proc.returncode}:\n"
                             + tail(self.listen_process.log_text()))
            time.sleep(0.1)
        raise Failed(f"{len(self.punches())} punches after {DELIVERY_TIMEOUT} s, wanted {n}; "
                     "listener log:\n" + tail(self.listen_process.log_text()))

    def metric(self, name):
        """The sum of a counter's samples on /metrics."""
        _, text = get_text(self.listen + "/metrics")
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"{re.escape(name)}(?:{{[^}}]*}})?\s+(\S+)$", line)
            if m:
                total += float(m.group(1))
        return total


def expect_status(got, want, what):
    if got[0] != want:
        raise Failed(f"{what}: HTTP {got[0]} (wanted {want}): {got[1][:300]}")


def checks():
    """(name, function of the suite), run in order: later ones build on the
    punches of earlier ones."""
    def login_and_logout(s):
        expect_status(s.send("evt-login-1", event("evt-login-1", "user.login")), 202, "login")
        expect_status(s.send("evt-logout-1", event("evt-logout-1", "user.logout")), 202, "logout")
        punches = s.wait_for_punches(2)
        got = [(p.get("user_id"), p.get("event"), p.get("idempotency_key")) for p in punches]
        want = [(EXTERNAL_ID, "login", "evt-login-1"), (EXTERNAL_ID, "logout", "evt-logout-1")]
        if got != want:
            raise Failed(f"punches {got}, wanted {want} (login before logout)")

    def tampered(s):
        body = event("evt-tampered", "user.login")
        got = s.send("evt-tampered", body,
                     tamper=lambda b: b.replace(b"user+3@", b"user+6@"))
        expect_status(got, 401, "a body changed after signing")

    def stale(s):
        body = event("evt-stale", "user.login")
        got = s.send("evt-stale", body, timestamp=int(time.time()) - 3600)
        expect_status(got, 401, "signed an hour ago")

    def unsigned(s):
        got = post(s.events_url, event("evt-unsigned", "user.login"), {})
        expect_status(got, 401, "no signature headers")

    def resent(s):
        # The sender's retry of the login: the same webhook-id and event, signed again.
        before = s.metric("agentsync_listen_events_duplicate_total")
        expect_status(s.send("evt-login-1", event("evt-login-1", "user.login")), 202,
                      "the login sent again")
        # Another agent's login after it: once that one is punched, the queue
        # has passed the repeat.
        expect_status(s.send("evt-login-2", event("evt-login-2", "user.login",
                                                  "user+6@talkdesk.com")), 202, "a second login")
        punches = s.wait_for_punches(3)
        keys = [p.get("idempotency_key") for p in punches]
        if keys != ["evt-login-1", "evt-logout-1", "evt-login-2"]:
            raise Failed(f"punches with keys {keys}, wanted the first login once")
        requests = s.punch_requests()
        if requests != 3:
            raise Failed(f"the time clock got {requests} punch requests, wanted 3: "
                         "the repeat was sent again")
        after = s.metric("agentsync_listen_events_duplicate_total")
        if after != before + 1:
            raise Failed(f"agentsync_listen_events_duplicate_total went {before} -> {after}")

    def nothing_from_rejected(s):
        # The refused events above were never queued: no punch for them.
        punches = s.punches()
        refused = [p for p in punches if p.get("idempotency_key") in
                   ("evt-tampered", "evt-stale", "evt-unsigned")]
        if refused:
            raise Failed(f"refused events were punched: {refused}")
        if s.metric("agentsync_listen_events_rejected_total") < 3:
            raise Failed("agentsync_listen_events_rejected_total counts fewer than 3")

    return [
        ("login and logout signed by standardwebhooks: 202, punched in order", login_and_logout),
        ("body changed after signing: 401", tampered),
        ("timestamp outside the tolerance: 401", stale),
        ("no signature: 401", unsigned),
        ("the same event sent again: 202, punched once", resent),
        ("refused events are not queued", nothing_from_rejected),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agentsync", required=True, help="the agentsync binary")
    parser.add_argument("--work", required=True, help="a directory for configs and logs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.work, exist_ok=True)

    results = []
    suite = Suite(args.agentsync, args.work)
    try:
        try:
            suite.start()
            setup = None
        except Exception as e:  # noqa: BLE001 - every check fails with the reason
            setup = f"set-up: {why(e)}"
        for name, fn in checks():
            if setup:
                results.append((name, setup))
                continue
            try:
                fn(suite)
                results.append((name, None))
            except Exception as e:  # noqa: BLE001 - any error fails the check
                results.append((name, why(e)))
    finally:
        suite.stop()
        stop_all()

    for name, failure in results:
        if failure:
            print(f"--- FAIL {name}\n  {failure}\n")
    for name, failure in results:
        print(f"{'FAIL' if failure else 'PASS'}  {name}")
    passed = sum(1 for _, failure in results if not failure)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 1 if passed != len(results) else 0


def why(error):
    return str(error) if isinstance(error, Failed) else f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
