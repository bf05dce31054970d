#!/usr/bin/env python3
"""Benchmark baseline (W1/W2 "python"): the script an admin would write instead
of agentsync, with the standard library only. It reads the bundled mock's
/users/not-formatted page by page (page=1, 2, ...) over one persistent
http.client connection (keep-alive), single-threaded, applies the same mapping
as the agentsync config -- select(.active != false) | {id: .punch_clock_id,
email: .punch_clock_email} -- and stops when the number of records read reaches
the page's "total" (or on an empty page). Prints one {id,email} JSON object a
line.

    python3 bench/fetch_users.py http://127.0.0.1:8787 > users.jsonl
"""

import http.client
import json
import sys
import urllib.parse


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: fetch_users.py BASE_URL", file=sys.stderr)
        return 2
    url = urllib.parse.urlsplit(sys.argv[1])
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    out = sys.stdout
    page = 1
    collected = 0
    while True:
        conn.request("GET", f"{url.path}/users/not-formatted?page={page}",
                     headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            print(f"page {page}: HTTP {resp.status}", file=sys.stderr)
            return 1
        data = json.loads(body)
        users = data["users"]
        for u in users:
            if u.get("active") is False:
                continue
            out.write(json.dumps({"id": u.get("punch_clock_id"),
                                  "email": u.get("punch_clock_email")},
                                 separators=(",", ":")))
            out.write("\n")
        count = data.get("count", len(users))
        collected += count
        if count == 0 or collected >= data["total"]:
            break
        page += 1
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
