#!/usr/bin/env bash
# agentsync listen benchmark: signed events into the durable queue, and a
# shift change until the last punch. Run by bench/run.sh, or on its own:
#
#   bash bench/listen.sh                       # builds the release binaries
#   BENCH_ONLY=listen bash bench/run.sh        # the same, through run.sh
#   BENCH_EVENTS=5000 bash bench/listen.sh     # a shorter acknowledgement run
#
#   L1  acknowledged: BENCH_EVENTS (default 20 000) events signed with
#       Standard Webhooks (HMAC-SHA256) from 8 senders on keep-alive
#       connections (examples/events_load.rs), 2 000 agents in turn; events
#       acknowledged per second and the time to each 202 (p50 / p99 / max).
#       The listener delivers them meanwhile to the mock's time clock (no
#       latency); the drain is the time from the last 202 to the last punch.
#   L2  shift change: 2 000 logins (one per agent) from 8 senders, the time
#       clock answering every punch in 20 ms (a second mock, --latency-ms 20);
#       from the last 202 to the last punch the time clock recorded. Twice:
#       with [listen] workers = 8 (a floor of 2 000 x 20 ms / 8 =
#       5 s), and with the default workers = 32 (floor 1.25 s).
#
# Both listeners hold the agent directory in memory: a mock with 2 300 users
# and agents, linked by a sync first; the 2 000 agents with an external ID are
# the senders' emails. Each listener has a fresh state directory. The listener
# runs under GNU time (its CPU time and peak memory are shown).
#
# Needs bash, cargo, curl, jq, python3, GNU time. No network but 127.0.0.1.
# Exit 1 when a command fails or an event is lost; unmet targets do not fail.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
gnu_time=/usr/bin/time
events=${BENCH_EVENTS:-20000}
senders=8
agents_linked=2000
mock_users=2300 # users n with n % 10 == 0 have no agent in the mock: 2 070 agents
latency_ms=20
if ! [[ $events =~ ^[1-9][0-9]*$ ]]; then
  echo "BENCH_EVENTS must be a positive integer, got '$events'" >&2
  exit 2
fi
for tool in cargo curl jq python3; do
  command -v "$tool" >/dev/null || {
    echo "missing tool: $tool" >&2
    exit 2
  }
done
[[ -x $gnu_time ]] || {
  echo "missing GNU time at $gnu_time" >&2
  exit 2
}

echo "== building: cargo build --release --locked (and examples/events_load.rs)"
cargo build --release --locked
cargo build --release --locked --example events_load

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentsync-bench-listen.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$root/target/release/agentsync" "$tmp/agentsync"
cp "$root/target/release/examples/events_load" "$tmp/events_load"
bin=$tmp/agentsync
load=$tmp/events_load
revision=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
secret="whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export AGENTSYNC_WEBHOOK_SECRET=$secret

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_mock NAME FLAGS... : sets mock_port (not in a subshell: the mock's pid
# must reach the clean-up's list).
start_mock() {
  local name=$1 port pid i try
  shift
  for try in 1 2 3 4 5; do
    port=$(free_port)
    "$bin" mock --addr "127.0.0.1:$port" "$@" >"$tmp/mock-$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for i in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      if curl -sf -o /dev/null "http://127.0.0.1:$port/_mock/stats"; then
        mock_port=$port
        return 0
      fi
      sleep 0.05
    done
  done
  echo "could not start the mock ($name):" >&2
  cat "$tmp/mock-$name.log" >&2
  exit 1
}

# write_config FILE DIRECTORY_PORT TIME_CLOCK_PORT [WORKERS]
write_config() {
  cat >"$1" <<EOF
name = "bench-listen"

[source]
base_url = "http://127.0.0.1:$2"
path = "/users/formatted"
query = { page = "{{page}}" }
records = ".users"

[pagination]
kind = "page"
total = ".total"
count = ".count"

[mapping]
jq = '{id: .id, email: .email}'

[sink]
kind = "scim"
base_url = "http://127.0.0.1:$2/scim/v2"
page_size = 1000

[sync]
max_changes = 100000

[actions.punch]
base_url = "http://127.0.0.1:$3"
method = "POST"
path = "/users/{{external_id}}/punch-clock"
headers = { Idempotency-Key = "{{event_id}}" }
body = '{"event": "{{var.event}}"}'

[listen]
auth = "standard-webhooks"
secret_env = "AGENTSYNC_WEBHOOK_SECRET"
${4:+workers = $4}

[[listen.on]]
when = '.type == "user.login"'
action = "punch"
vars = { event = "login" }

[[listen.on]]
when = '.type == "user.logout"'
action = "punch"
vars = { event = "logout" }
EOF
}

# start_listener NAME CONFIG : sets listen_url, listen_pid (GNU time's) and
# listen_log; the listener's own state directory.
start_listener() {
  local name=$1 config=$2 i
  listen_log=$tmp/listen-$name.log
  mkdir -p "$tmp/state-$name"
  AGENTSYNC_STATE_DIR=$tmp/state-$name "$gnu_time" -o "$tmp/time-$name" -f '%e %U %S %M' \
    "$bin" listen --config "$config" --addr 127.0.0.1:0 2>"$listen_log" &
  listen_pid=$!
  pids+=("$listen_pid")
  listen_url=
  for i in $(seq 1 400); do
    listen_url=$(grep -o 'listening on http://[0-9.:]*' "$listen_log" | head -n 1 | cut -d' ' -f3 || true)
    if [[ -n $listen_url ]] && curl -sf -o /dev/null "$listen_url/healthz"; then
      echo "   listener '$name' on $listen_url"
      return 0
    fi
    kill -0 "$listen_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "could not start the listener ($name):" >&2
  cat "$listen_log" >&2
  exit 1
}

# stop_listener NAME : SIGTERM to the listener (GNU time's child), waits;
# sets listen_rc, and the listener's CPU and memory from GNU time.
stop_listener() {
  local name=$1 child
  child=$(pgrep -P "$listen_pid" || true)
  [[ -n $child ]] && kill -TERM "$child" 2>/dev/null
  listen_rc=0
  wait "$listen_pid" || listen_rc=$?
  read -r L_WALL[$name] L_USR[$name] L_SYS[$name] L_RSS[$name] < <(tail -n 1 "$tmp/time-$name")
}
declare -A L_WALL L_USR L_SYS L_RSS

# punches PORT : how many punches the time clock at PORT recorded.
punches() { curl -sfS "http://127.0.0.1:$1/_mock/punches" | jq '.punches | length'; }

# wait_punches PORT N : until N punches (bounded: 300 s); prints the seconds waited.
wait_punches() {
  local port=$1 want=$2 start now got
  start=$(date +%s.%N)
  while :; do
    got=$(punches "$port")
    now=$(date +%s.%N)
    if ((got >= want)); then
      awk -v a="$start" -v b="$now" 'BEGIN { printf "%.2f", b - a }'
      return 0
    fi
    if awk -v a="$start" -v b="$now" 'BEGIN { exit !(b - a > 300) }'; then
      echo "only $got of $want punches after 300 s" >&2
      return 1
    fi
    sleep 0.02
  done
}

# last_punch_ms PORT : the time of the latest punch, Unix milliseconds.
last_punch_ms() {
  curl -sfS "http://127.0.0.1:$1/_mock/punches" |
    jq '[.punches[].at | sub("\\.(?<ms>[0-9]+)Z$"; "Z|\(.ms)") | split("|") | (.[0] | fromdate) * 1000 + (.[1] | tonumber)] | max'
}

failures=0

echo
echo "== machine"
echo "   nproc: $(nproc)   $("$bin" --version) (git $revision)   senders: $senders   events (L1): $events"

echo
echo "== set-up: a directory of $mock_users agents, linked by a sync"
start_mock directory --users "$mock_users" --agents "$mock_users" --page-size 1000
dir_port=$mock_port
echo "   directory and fast time clock on 127.0.0.1:$dir_port"
write_config "$tmp/sync.toml" "$dir_port" "$dir_port"
AGENTSYNC_STATE_DIR=$tmp/state-sync "$bin" --config "$tmp/sync.toml" --quiet >/dev/null
# The directory answers 1000 agents a page at most.
for start in 1 1001 2001; do
  curl -sfS "http://127.0.0.1:$dir_port/scim/v2/Users?startIndex=$start&count=1000"
done |
  jq -r '.Resources[] | select(.externalId != null and (.externalId | test("^[0-9]+$"))) | .userName' \
    >"$tmp/linked.txt"
head -n "$agents_linked" "$tmp/linked.txt" >"$tmp/emails.txt"
linked=$(wc -l <"$tmp/emails.txt" | tr -d ' ')
echo "   $linked linked agents"
if ((linked != agents_linked)); then
  echo "expected $agents_linked linked agents, got $linked" >&2
  exit 1
fi

echo
echo "== L1: $events signed events from $senders senders into the durable queue"
write_config "$tmp/ack.toml" "$dir_port" "$dir_port"
start_listener ack "$tmp/ack.toml"
# Warm-up, not measured: the connections, the queue's first pages.
"$load" "$listen_url/events" "$secret" "$tmp/emails.txt" 400 "$senders" warm >"$tmp/warm.json"
wait_punches "$dir_port" 400 >/dev/null
"$load" "$listen_url/events" "$secret" "$tmp/emails.txt" "$events" "$senders" ack >"$tmp/ack.json"
wait_punches "$dir_port" $((events + 400)) >/dev/null || failures=$((failures + 1))
ack_last_punch=$(last_punch_ms "$dir_port")
stop_listener ack
ack_rc=$listen_rc
jq -c . "$tmp/ack.json"

echo
# shift NAME WORKERS : 2 000 logins against a fresh time clock at 20 ms.
shift_change() {
  local name=$1 workers=$2 port
  echo
  echo "== $name: shift change, $agents_linked logins from $senders senders, time clock at $latency_ms ms, workers = $workers"
  start_mock "clock-$name" --users "$mock_users" --agents 0 --page-size 1000 --latency-ms "$latency_ms"
  port=$mock_port
  write_config "$tmp/$name.toml" "$dir_port" "$port" "$workers"
  start_listener "$name" "$tmp/$name.toml"
  "$load" "$listen_url/events" "$secret" "$tmp/emails.txt" "$agents_linked" "$senders" "$name" >"$tmp/$name.json"
  wait_punches "$port" "$agents_linked" >/dev/null || failures=$((failures + 1))
  LAST_PUNCH[$name]=$(last_punch_ms "$port")
  stop_listener "$name"
  RCS[$name]=$listen_rc
  jq -c . "$tmp/$name.json"
}
declare -A LAST_PUNCH RCS
shift_change shift 8
shift_change shift32 32

# ---------------------------------------------------------------- report

field() { jq -r ".$2" "$tmp/$1.json"; }
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
ack_rate=$(f1 "$(field ack accepted_per_s)")
ack_p50=$(f2 "$(field ack p50_ms)")
ack_p99=$(f2 "$(field ack p99_ms)")
ack_max=$(f2 "$(field ack max_ms)")
ack_gap=$(awk -v p="$ack_last_punch" -v a="$(field ack last_202_unix_ms)" 'BEGIN { printf "%.2f", (p - a) / 1000 }')
gap() { awk -v p="${LAST_PUNCH[$1]}" -v a="$(field "$1" last_202_unix_ms)" 'BEGIN { printf "%.2f", (p - a) / 1000 }'; }
shift_gap=$(gap shift)
shift32_gap=$(gap shift32)
for run in ack shift shift32; do
  ok=$(jq -r '.accepted == .events' "$tmp/$run.json")
  if [[ $ok != true ]]; then
    echo "!! $run: not every event was acknowledged with 202: $(jq -c .statuses "$tmp/$run.json")" >&2
    failures=$((failures + 1))
  fi
done
for rc in "$ack_rc" "${RCS[shift]}" "${RCS[shift32]}"; do
  if [[ $rc != 0 ]]; then
    echo "!! a listener exited $rc after SIGTERM" >&2
    failures=$((failures + 1))
  fi
done
cpu() { awk -v u="${L_USR[$1]}" -v s="${L_SYS[$1]}" 'BEGIN { printf "%.2f", u + s }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "== results (listener CPU = user + sys over its whole life, warm-up included)"
echo
printf '| %-58s | %-44s |\n' measurement value
printf '| %-58s | %-44s |\n' ':--' ':--'
printf '| %-58s | %-44s |\n' "L1 acknowledged ($events events, $senders senders)" "$ack_rate events/s in $(f2 "$(field ack wall_s)") s"
printf '| %-58s | %-44s |\n' "L1 time to 202: p50 / p99 / max" "$ack_p50 / $ack_p99 / $ack_max ms"
printf '| %-58s | %-44s |\n' "L1 last punch after the last 202 (time clock, no latency)" "$ack_gap s"
printf '| %-58s | %-44s |\n' "L1 listener CPU, peak memory" "$(cpu ack) s, $(mb "${L_RSS[ack]}") MB"
for run in shift shift32; do
  w=8
  [[ $run == shift32 ]] && w=32
  printf '| %-58s | %-44s |\n' "L2 $agents_linked logins acknowledged (workers = $w)" "in $(f2 "$(field "$run" wall_s)") s, p99 $(f2 "$(field "$run" p99_ms)") ms"
  printf '| %-58s | %-44s |\n' "L2 last punch after the last 202 (workers = $w)" "$(gap "$run") s (floor $(awk -v w="$w" -v n="$agents_linked" -v l="$latency_ms" 'BEGIN { printf "%.2f", n * l / 1000 / w }') s)"
  printf '| %-58s | %-44s |\n' "L2 listener CPU, peak memory (workers = $w)" "$(cpu "$run") s, $(mb "${L_RSS[$run]}") MB"
done

met=0
total=0
target() {
  local text=$1 measured=$2 cond=$3 shown=$4 verdict
  total=$((total + 1))
  if awk -v x="$measured" "BEGIN { exit !($cond) }"; then
    verdict=MET
    met=$((met + 1))
  else
    verdict="NOT MET"
  fi
  printf '| %-52s | %-28s | %-7s |\n' "$text" "$shown" "$verdict"
}
echo
echo "== targets"
echo
printf '| %-52s | %-28s | %-7s |\n' target measured verdict
printf '| %-52s | %-28s | %-7s |\n' ':--' ':--' ':--'
target "L1 >= 2000 events/s acknowledged" "$ack_rate" "x >= 2000" "$ack_rate/s"
target "L1 p99 time to 202 <= 20 ms" "$ack_p99" "x <= 20" "$ack_p99 ms"
target "L2 last punch <= 5 s after the last 202 (workers 8)" "$shift_gap" "x <= 5" "$shift_gap s"
target "L2 last punch <= 5 s after the last 202 (workers 32, the default)" "$shift32_gap" "x <= 5" "$shift32_gap s"
echo
echo "$met of $total targets met."
if ((failures)); then
  echo "FAIL: $failures failure(s) above." >&2
  exit 1
fi
