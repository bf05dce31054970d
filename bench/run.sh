#!/usr/bin/env bash
# agentsync benchmark: builds the release binary, serves the bundled mock on a
# free 127.0.0.1 port, and measures in one run, side by side:
#
#   W1  fetch + map of N users (N/100 pages of 100) at zero latency:
#       agentsync fetch (concurrency 4) vs a curl+jq loop (bench/fetch_users.sh)
#       vs a standard-library Python script (bench/fetch_users.py)
#   W2  the same three against a mock that adds 20 ms to every request, with the
#       concurrent floor ceil(pages/4) x 20 ms and the sequential floor pages x 20 ms
#   W3  a full dry-run plan: N source users against N SCIM directory agents
#   W4  the jq mapping alone: one page holding all N users, agentsync fetch
#       of the saved page from a static loopback server vs jq on the saved file
#   W1L, W3L  W1 and W3 at L users (default 1 000 000 for N = 100 000, else
#       10 x N up to 1 000 000; BENCH_LARGE_USERS sets it), pages of 1000
#   floor  beside each W1 figure: examples/floor.rs, the same HTTP client on 4
#       threads with serde straight to {id, email}; the ratio agentsync / floor
#   W3P  the PUT-mode listing: W3L with [sink] update = "put" (each listed user's
#       resource kept for its write), peak memory beside W3L's
#   nightly  the Talkdesk preset (rate_limit = 4) against 150 ms latency: a dry
#       run of 10 000 source users (pages of 100) against 10 000 seeded agents,
#       the directory's largest page 1 000, [sink] page_size unset; run twice (the
#       second keeps /ServiceProviderConfig from the first), with the floor
#       max(source pages / 4 x 150 ms, directory requests / 4 per s)
#   L1, L2  agentsync listen: signed events acknowledged per second and the
#       time to each 202, and a shift change until the last punch (bench/listen.sh,
#       run last; BENCH_ONLY=listen runs it alone)
#   apply  a sync of 40 writes at [sink] rate_limit = 4 against 300 ms latency,
#       one of 2000 writes, and one `agentsync action punch` against 10000
#       agents (plain SCIM and --talkdesk), with the mock's request counters
#       (GET /_mock/stats) and the process start (`agentsync --version`)
#
# Every measurement runs under GNU time (/usr/bin/time -f '%e %U %S %M'): wall
# time, user and system CPU time, peak RSS. The sub-second ones and W2 agentsync
# run once untimed, then BENCH_REPEAT times (default 3) and report the run of
# median wall time;
# the curl+jq loops and W2 python, which take tens of seconds, run once. The three W1/W2 outputs are
# checked to be the same users. Prints a table and the targets MET / NOT MET.
# Exit 1 if a command fails or the outputs differ; unmet targets do not fail.
#
#   bash bench/run.sh                     # N = 100000, L = 1000000
#   BENCH_USERS=2000 bash bench/run.sh    # quick smoke run (L = 20000)
#   BENCH_USERS=1000000 bash bench/run.sh # everything at 1M (L = N)
#   BENCH_REPEAT=5 bash bench/run.sh      # median of 5 runs instead of 3
#
# Needs bash, cargo, curl, jq, python3 and GNU time. No network but 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ ${BENCH_ONLY:-} == listen ]]; then
  exec bash bench/listen.sh
elif [[ -n ${BENCH_ONLY:-} ]]; then
  echo "BENCH_ONLY must be 'listen' or unset, got '$BENCH_ONLY'" >&2
  exit 2
fi
root=$PWD
bench=$root/bench
gnu_time=/usr/bin/time

users=${BENCH_USERS:-100000}
page_size=100
latency_ms=20
concurrency=4
repeat=${BENCH_REPEAT:-3}
if ! [[ $users =~ ^[1-9][0-9]*$ ]]; then
  echo "BENCH_USERS must be a positive integer, got '$users'" >&2
  exit 2
fi
if ! [[ $repeat =~ ^[1-9][0-9]*$ ]]; then
  echo "BENCH_REPEAT must be a positive integer, got '$repeat'" >&2
  exit 2
fi
pages=$(((users + page_size - 1) / page_size))
if ((users >= 1000000)); then
  default_large=$users
elif ((users * 10 >= 1000000)); then
  default_large=1000000
else
  default_large=$((users * 10))
fi
large=${BENCH_LARGE_USERS:-$default_large}
if ! [[ $large =~ ^[1-9][0-9]*$ ]]; then
  echo "BENCH_LARGE_USERS must be a positive integer, got '$large'" >&2
  exit 2
fi
large_page_size=1000
large_pages=$(((large + large_page_size - 1) / large_page_size))
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

echo "== building: cargo build --release --locked (and the floor, examples/floor.rs)"
cargo build --release --locked
cargo build --release --locked --example floor

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentsync-bench.XXXXXX")
mock_pids=()
cleanup() {
  local pid
  for pid in "${mock_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a private copy of the binary, so that a rebuild in the working tree while
# the benchmark runs cannot mix two builds in one set of figures.
cp "$root/target/release/agentsync" "$tmp/agentsync"
cp "$root/target/release/examples/floor" "$tmp/floor"
bin=$tmp/agentsync
floor=$tmp/floor
revision=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)

# ---------------------------------------------------------------- helpers

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_mock NAME MOCK_FLAGS... : sets mock_port and mock_pid.
start_mock() {
  local name=$1 try i
  shift
  for try in 1 2 3 4 5; do
    mock_port=$(free_port)
    "$bin" mock --addr "127.0.0.1:$mock_port" -q "$@" >"$tmp/mock-$name.log" 2>&1 &
    mock_pid=$!
    mock_pids+=("$mock_pid")
    for i in $(seq 1 200); do
      if ! kill -0 "$mock_pid" 2>/dev/null; then
        break # exited (port taken?): try another port
      fi
      if curl -sf -o /dev/null "http://127.0.0.1:$mock_port/users/not-formatted?page=999999999"; then
        echo "   mock '$name' on 127.0.0.1:$mock_port: $*"
        return 0
      fi
      sleep 0.05
    done
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  done
  echo "could not start the mock ($name):" >&2
  cat "$tmp/mock-$name.log" >&2
  exit 1
}

stop_mock() {
  kill "$mock_pid" 2>/dev/null || true
  wait "$mock_pid" 2>/dev/null || true
}

# write_config FILE PORT PAGINATION_KIND [scim]
write_config() {
  local file=$1 port=$2 kind=$3 sink=${4:-}
  {
    echo 'name = "bench"'
    echo
    echo '[source]'
    echo "base_url = \"http://127.0.0.1:$port\""
    echo 'path = "/users/not-formatted"'
    if [[ $kind == page ]]; then
      echo 'query = { page = "{{page}}" }'
    else
      echo 'query = { page = "1" }'
    fi
    echo 'records = ".users"'
    echo "concurrency = $concurrency"
    echo
    echo '[pagination]'
    echo "kind = \"$kind\""
    echo 'max_pages = 100000'
    if [[ $kind == page ]]; then
      echo 'total = ".total"'
      echo 'count = ".count"'
    fi
    echo
    echo '[mapping]'
    echo "jq = 'select(.active != false) | {id: .punch_clock_id, email: .punch_clock_email}'"
    if [[ $sink == scim ]]; then
      echo
      echo '[sink]'
      echo 'kind = "scim"'
      echo "base_url = \"http://127.0.0.1:$port/scim/v2\""
      echo 'page_size = 1000'
    fi
  } >"$file"
}

# Results, by key: wall, user and sys seconds, peak RSS KiB, exit status.
declare -A WALL USR SYS RSS RC RUNS
keys=()

# measure KEY RUNS OUTFILE COMMAND... : runs COMMAND RUNS times under GNU time
# and keeps the run of median wall time (a single run of a command that takes
# tens of seconds is enough; a sub-second one varies with page faults and
# scheduling on a shared machine). Any failed run counts as the result.
measure() {
  local key=$1 runs=$2 out=$3 rc=0 run line
  shift 3
  echo "   $key (${runs}x): $*"
  : >"$tmp/runs.$key"
  if ((runs > 1)); then
    # One untimed run first, as hyperfine's --warmup: the mock's first answers
    # (its threads and buffers) and cold caches are not what is measured.
    "$@" >"$out" 2>"$tmp/err.$key" || true
  fi
  for ((run = 1; run <= runs; run++)); do
    rc=0
    "$gnu_time" -o "$tmp/time.$key" -f '%e %U %S %M' "$@" >"$out" 2>"$tmp/err.$key" || rc=$?
    line=$(tail -n 1 "$tmp/time.$key")
    if ((rc != 0)); then
      break
    fi
    echo "$line" >>"$tmp/runs.$key"
  done
  if ((rc == 0)); then
    line=$(sort -n -k1,1 "$tmp/runs.$key" | sed -n "$(((runs + 1) / 2))p")
  fi
  read -r WALL[$key] USR[$key] SYS[$key] RSS[$key] <<<"$line"
  RC[$key]=$rc
  RUNS[$key]=$runs
  keys+=("$key")
  if ((rc != 0)); then
    echo "   !! $key exited $rc; stderr:" >&2
    tail -n 20 "$tmp/err.$key" >&2
  fi
}

# Normalise outputs to sorted "id<TAB>email" lines (ids as decimal strings).
norm_fetch_json() { jq -r '.users[] | "\(.id)\t\(.email)"' "$1" | LC_ALL=C sort >"$2"; }
norm_jsonl() { jq -r '"\(.id)\t\(.email)"' "$1" | LC_ALL=C sort >"$2"; }
lines() { wc -l <"$1" | tr -d ' '; }

failures=0
declare -A COUNT
# verify TITLE KEY... : the normalised lists $tmp/KEY.norm must be equal and hold N users.
verify() {
  local title=$1 first=$2 k ok=1
  shift
  for k in "$@"; do
    COUNT[$k]=$(lines "$tmp/$k.norm")
    if [[ ${COUNT[$k]} != "$users" ]] || ! cmp -s "$tmp/$first.norm" "$tmp/$k.norm"; then
      ok=0
    fi
  done
  if ((ok)); then
    EQUAL[$title]=PASS
  else
    EQUAL[$title]=FAIL
    failures=$((failures + 1))
  fi
}
declare -A EQUAL

# ---------------------------------------------------------------- machine

echo
echo "== machine"
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "   nproc: $(nproc)   arch: $(uname -m)   cpu: ${cpu_model:-unknown}"
echo "   $("$bin" --version 2>/dev/null || echo agentsync) (git $revision)   $(jq --version)   $(curl --version | head -n 1 | cut -d' ' -f1-2)   $(python3 --version)"
echo "   users: $users   pages: $pages x $page_size   concurrency: $concurrency   latency (W2): $latency_ms ms"

# ---------------------------------------------------------------- W1 + W3

echo
echo "== W1: fetch + map $users users ($pages pages of $page_size), no latency"
start_mock w1 --users "$users" --agents "$users" --page-size "$page_size"
base=http://127.0.0.1:$mock_port
# Context for the figures: three requests for one page on ONE kept-alive
# connection. If the 2nd and 3rd take ~40 ms while the first takes ~1 ms, the
# mock's socket holds the end of each response until the client's delayed ACK
# (Nagle), and every client that keeps connections alive pays it per request.
probe_url="$base/users/not-formatted?page=1"
keepalive_ms=$(curl -sfS -w '%{time_total}\n' -o /dev/null "$probe_url" -o /dev/null "$probe_url" -o /dev/null "$probe_url" |
  awk '{ printf "%s%.1f", (NR > 1 ? " / " : ""), $1 * 1000 }')
echo "   mock keep-alive check, one page 3x on one connection: $keepalive_ms ms"
write_config "$tmp/w1.toml" "$mock_port" page
measure w1_agentsync $repeat "$tmp/w1_agentsync.out" "$bin" fetch --config "$tmp/w1.toml" --output json -q
measure w1_floor $repeat "$tmp/w1_floor.out" "$floor" "$base" "$pages"
measure w1_curljq 1 "$tmp/w1_curljq.out" bash "$bench/fetch_users.sh" "$base"
measure w1_python $repeat "$tmp/w1_python.out" python3 "$bench/fetch_users.py" "$base"
norm_fetch_json "$tmp/w1_agentsync.out" "$tmp/w1_agentsync.norm" || true
norm_jsonl "$tmp/w1_curljq.out" "$tmp/w1_curljq.norm" || true
norm_jsonl "$tmp/w1_python.out" "$tmp/w1_python.norm" || true
LC_ALL=C sort "$tmp/w1_floor.out" >"$tmp/w1_floor.norm"
verify W1 w1_agentsync w1_curljq w1_python w1_floor

echo
echo "== W3: dry-run plan, $users source users against $users SCIM agents"
write_config "$tmp/w3.toml" "$mock_port" page scim
measure w3_agentsync $repeat "$tmp/plan.json" "$bin" --config "$tmp/w3.toml" --dry-run --output json -q
plan_summary=$(jq -c '{source_users: .source.users, agents: .sink.agents} + .summary' "$tmp/plan.json" 2>/dev/null || echo '(no plan)')
echo "   plan: $plan_summary"
stop_mock

if ((large != users)); then
  echo
  echo "== W1L + W3L: $large users ($large_pages pages of $large_page_size), W3L against $large agents"
  start_mock w1l --users "$large" --agents "$large" --page-size "$large_page_size"
  base=http://127.0.0.1:$mock_port
  write_config "$tmp/w1l.toml" "$mock_port" page
  measure w1l_agentsync $repeat "$tmp/w1l_agentsync.out" "$bin" fetch --config "$tmp/w1l.toml" --output json -q
  measure w1l_floor $repeat "$tmp/w1l_floor.out" "$floor" "$base" "$large_pages"
  write_config "$tmp/w3l.toml" "$mock_port" page scim
  measure w3l_agentsync $repeat "$tmp/planl.json" "$bin" --config "$tmp/w3l.toml" --dry-run --output json -q
  large_summary=$(jq -c '{source_users: .source.users, agents: .sink.agents} + .summary' "$tmp/planl.json" 2>/dev/null || echo '(no plan)')
  echo "   plan: $large_summary"
  sed 's/^page_size = 1000$/&\nupdate = "put"/' "$tmp/w3l.toml" >"$tmp/w3p.toml"
  measure w3p_agentsync 1 "$tmp/planp.json" "$bin" --config "$tmp/w3p.toml" --dry-run --output json -q
  rm -f "$tmp/planp.json"
  jq -r '.users[] | "\(.id)\t\(.email)"' "$tmp/w1l_agentsync.out" | LC_ALL=C sort >"$tmp/w1l_agentsync.norm" || true
  LC_ALL=C sort "$tmp/w1l_floor.out" >"$tmp/w1l_floor.norm"
  rm -f "$tmp/w1l_agentsync.out" "$tmp/w1l_floor.out" "$tmp/planl.json"
  users_saved=$users
  users=$large
  verify W1L w1l_agentsync w1l_floor
  users=$users_saved
  stop_mock
fi

# ---------------------------------------------------------------- W2

echo
echo "== W2: the same at --latency-ms $latency_ms"
start_mock w2 --users "$users" --agents 1 --page-size "$page_size" --latency-ms "$latency_ms"
base=http://127.0.0.1:$mock_port
write_config "$tmp/w2.toml" "$mock_port" page
measure w2_agentsync $repeat "$tmp/w2_agentsync.out" "$bin" fetch --config "$tmp/w2.toml" --output json -q
measure w2_curljq 1 "$tmp/w2_curljq.out" bash "$bench/fetch_users.sh" "$base"
measure w2_python 1 "$tmp/w2_python.out" python3 "$bench/fetch_users.py" "$base"
norm_fetch_json "$tmp/w2_agentsync.out" "$tmp/w2_agentsync.norm" || true
norm_jsonl "$tmp/w2_curljq.out" "$tmp/w2_curljq.norm" || true
norm_jsonl "$tmp/w2_python.out" "$tmp/w2_python.norm" || true
verify W2 w2_agentsync w2_curljq w2_python
stop_mock

# ---------------------------------------------------------------- W4

echo
echo "== W4: mapping alone, one page of $users users"
start_mock w4 --users "$users" --agents 1 --page-size "$users"
measure w4_curl $repeat "$tmp/page.json" curl -sfS "http://127.0.0.1:$mock_port/users/not-formatted?page=1"
page_mb=$(awk -v b="$(wc -c <"$tmp/page.json")" 'BEGIN { printf "%.1f", b / 1048576 }')
stop_mock
# agentsync reads the very bytes jq reads, served as a static file, so that the
# mock's time to generate the page is in neither figure.
mkdir -p "$tmp/static"
cp "$tmp/page.json" "$tmp/static/page.json"
static_port=$(free_port)
python3 -m http.server "$static_port" --bind 127.0.0.1 --directory "$tmp/static" >"$tmp/static.log" 2>&1 &
mock_pid=$!
mock_pids+=("$mock_pid")
for i in $(seq 1 200); do
  curl -sf -o /dev/null "http://127.0.0.1:$static_port/page.json" && break
  sleep 0.05
done
write_config "$tmp/w4.toml" "$static_port" none
sed -i -e 's|^path = .*|path = "/page.json"|' -e '/^query = /d' "$tmp/w4.toml"
measure w4_agentsync $repeat "$tmp/w4_agentsync.out" "$bin" fetch --config "$tmp/w4.toml" --output json -q
measure w4_jq $repeat "$tmp/w4_jq.out" jq -c '.users[] | select(.active != false) | {id: .punch_clock_id, email: .punch_clock_email}' "$tmp/page.json"
norm_fetch_json "$tmp/w4_agentsync.out" "$tmp/w4_agentsync.norm" || true
norm_jsonl "$tmp/w4_jq.out" "$tmp/w4_jq.norm" || true
verify W4 w4_agentsync w4_jq
stop_mock

# ---------------------------------------------------------------- apply

# Writes and actions against mocks that count what they serve, by kind
# (GET /_mock/stats; POST /_mock/stats/reset reads and zeroes the counts).
# A sync's stderr is not a terminal here, so agentsync writes one line per
# stage; each line is stamped as it arrives (bash's EPOCHREALTIME). The writes'
# wall runs from the "directory: N agents" line (the listing is done; planning
# a few thousand changes takes milliseconds) to the "applied" line.
echo
echo "== apply: 40 writes at [sink] rate_limit = 4 (300 ms latency), 2000 writes, one action against 10000 agents"
export AGENTSYNC_STATE_DIR=$tmp/state
declare -A AP_WRITES AP_WALL AP_WWALL AP_CPU AP_RPW AP_REQ AP_TOKEN AP_RC AP_MS
stamp_lines() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
}
mock_stats() { curl -sfS "http://127.0.0.1:$mock_port/_mock/stats"; }
reset_stats() { curl -sfS -X POST -o /dev/null "http://127.0.0.1:$mock_port/_mock/stats/reset"; }
# sum_stats JSON FIELD... : the sum of the named counters.
sum_stats() {
  local json=$1 expr
  shift
  expr=$(printf '+ (.%s // 0) ' "$@")
  jq -r "0 $expr" <<<"$json"
}

# ms_median RUNS COMMAND... : the median wall of RUNS runs, in ms.
ms_median() {
  local runs=$1 i t0 t1
  shift
  for ((i = 0; i < runs; i++)); do
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
  done | sort -n | sed -n "$(((runs + 1) / 2))p"
}

# apply_row KEY USERS LATENCY_MS RATE_LIMIT: one sync with --force of USERS
# source users against USERS seeded agents (the mock's seed makes 40 writes of
# 62 users, 2000 of 3110).
apply_row() {
  local key=$1 n=$2 latency=$3 rate=$4 t0 t1 line stats rc
  start_mock "$key" --users "$n" --agents "$n" --page-size 100 --latency-ms "$latency"
  write_config "$tmp/$key.toml" "$mock_port" page scim
  # [sink] is the last table write_config writes.
  if ((rate > 0)); then echo "rate_limit = $rate" >>"$tmp/$key.toml"; fi
  printf '\n[sync]\nmax_changes = 1000000\n' >>"$tmp/$key.toml"
  reset_stats
  echo "   $key: sync --force, $n users and agents, latency $latency ms, rate_limit $rate"
  t0=$EPOCHREALTIME
  {
    "$gnu_time" -o "$tmp/time.$key" -f '%e %U %S %M' \
      "$bin" --config "$tmp/$key.toml" --force --output json 2>&1 >"$tmp/$key.json" ||
      echo "exit $?"
  } | stamp_lines >"$tmp/log.$key"
  t1=$EPOCHREALTIME
  stats=$(mock_stats)
  stop_mock
  rc=$(awk '$2 == "exit" { print $3 }' "$tmp/log.$key")
  AP_RC[$key]=${rc:-0}
  AP_WRITES[$key]=$(jq -r '[.summary.link, .summary.update, .summary.unlink] | add' "$tmp/$key.json" 2>/dev/null || echo 0)
  AP_WALL[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  AP_WWALL[$key]=$(awk '/ directory: / && !l { l = $1 } / applied / && l { printf "%.2f", $1 - l; exit }' "$tmp/log.$key")
  line=$(tail -n 1 "$tmp/time.$key")
  AP_CPU[$key]=$(awk -v l="$line" 'BEGIN { split(l, f, " "); printf "%.2f", f[2] + f[3] }')
  AP_REQ[$key]=$(sum_stats "$stats" scim_put scim_patch scim_get)
  AP_RPW[$key]=$(awk -v r="${AP_REQ[$key]}" -v w="${AP_WRITES[$key]}" 'BEGIN { if (w == 0) print "n/a"; else printf "%.2f", r / w }')
  echo "   $key: $(jq -c 'del(.unauthorized)' <<<"$stats")"
  if [[ ${AP_RC[$key]} != 0 ]]; then
    echo "   !! $key exited ${AP_RC[$key]}; stderr:" >&2
    tail -n 20 "$tmp/log.$key" >&2
    failures=$((failures + 1))
  fi
}
apply_row a40 62 300 4
apply_row a2000 3110 0 0

# action_row KEY MOCK_FLAGS... : one `agentsync action punch --agent EMAIL`
# against 10000 agents, after a sync that gave them their IDs. Timed by
# `measure` (the run of median wall); the requests are the mock's counts over
# every run (the untimed first one included) divided by the runs.
action_row() {
  local key=$1 runs stats
  shift
  start_mock "$key" --users 10000 --agents 10000 --page-size 1000 "$@"
  {
    echo 'name = "bench-action"'
    echo
    echo '[source]'
    echo "base_url = \"http://127.0.0.1:$mock_port\""
    echo 'path = "/users/formatted"'
    echo 'query = { page = "{{page}}" }'
    echo 'records = ".users"'
    echo
    echo '[pagination]'
    echo 'kind = "page"'
    echo 'total = ".total"'
    echo 'count = ".count"'
    echo
    echo '[mapping]'
    echo "jq = '{id: .id, email: .email}'"
    echo
    echo '[sink]'
    if [[ " $* " == *" --talkdesk "* ]]; then
      echo 'kind = "talkdesk"'
      echo "token_url = \"http://127.0.0.1:$mock_port/oauth/token\""
    else
      echo 'kind = "scim"'
    fi
    echo "base_url = \"http://127.0.0.1:$mock_port/scim/v2\""
    echo 'page_size = 1000'
    echo
    echo '[sync]'
    echo 'max_changes = 1000000'
    echo
    echo '[actions.punch]'
    echo 'method = "POST"'
    echo 'path = "/users/{{external_id}}/punch-clock"'
    echo "body = '{\"event\": \"in\"}'"
  } >"$tmp/$key.toml"
  # The sync that links the agents runs without the Talkdesk preset's
  # rate_limit = 4 (thousands of writes); the action keeps the preset's.
  sed 's/^page_size = 1000$/&\nrate_limit = 0/' "$tmp/$key.toml" >"$tmp/$key.sync.toml"
  if ! "$bin" --config "$tmp/$key.sync.toml" --force -q >/dev/null 2>"$tmp/err.$key.sync"; then
    echo "   !! $key: the sync before the action failed:" >&2
    tail -n 20 "$tmp/err.$key.sync" >&2
    failures=$((failures + 1))
  fi
  reset_stats
  measure "$key" "$repeat" "$tmp/$key.out" "$bin" action punch --config "$tmp/$key.toml" --agent 'user+9998@talkdesk.com' -q
  runs=$repeat
  if ((repeat > 1)); then runs=$((repeat + 1)); fi
  stats=$(mock_stats)
  # GNU time shows hundredths: the wall in ms, the median of 5 more runs.
  AP_MS[$key]=$(ms_median 5 "$bin" action punch --config "$tmp/$key.toml" --agent 'user+9998@talkdesk.com' -q)
  stop_mock
  AP_REQ[$key]=$(awk -v r="$(sum_stats "$stats" service_provider_config scim_filter scim_list scim_get punches)" -v n="$runs" 'BEGIN { printf "%.1f", r / n }')
  AP_TOKEN[$key]=$(awk -v r="$(sum_stats "$stats" token)" -v n="$runs" 'BEGIN { printf "%.1f", r / n }')
  echo "   $key, per action: $(jq -c --argjson n "$runs" 'del(.unauthorized) | map_values(. / $n)' <<<"$stats")"
}
export TALKDESK_CLIENT_ID=mock-client TALKDESK_CLIENT_SECRET=mock-secret
action_row action
action_row action_td --talkdesk
# What starting the process costs, whatever it then does.
measure start "$repeat" "$tmp/start.out" "$bin" --version
AP_MS[start]=$(ms_median 5 "$bin" --version)

# ---------------------------------------------------------------- nightly

# The nightly run against Talkdesk at its rate limit: 4 requests per second,
# 150 ms a request, 10 000 agents, the directory's largest page 1 000 and no
# [sink] page_size. The source (100 pages of 100, no rate limit, 4 at a time)
# and the directory (token, /ServiceProviderConfig, 10 pages) are read at the
# same time; the floor is the slower of the two.
echo
echo "== nightly: Talkdesk preset at 4 requests/s, 150 ms latency, 10000 users x 10000 agents"
start_mock nightly --talkdesk --users 10000 --agents 10000 --page-size 100 --latency-ms 150 --max-page-size 1000
sed -e "s#http://127.0.0.1:8787#http://127.0.0.1:$mock_port#g" -e 's/^on_contested = .*/&\nmax_changes = 1000000/' \
  "$root/configs/talkdesk.toml" >"$tmp/nightly.toml"
export AGENTSYNC_STATE_DIR=$tmp/nightly-state
export TALKDESK_CLIENT_ID=mock-client TALKDESK_CLIENT_SECRET=mock-secret
reset_stats
measure nightly1 1 "$tmp/nightly1.json" "$bin" --config "$tmp/nightly.toml" --dry-run --output json -q
NIGHTLY_STATS1=$(mock_stats | jq -c 'del(.unauthorized)')
reset_stats
measure nightly2 1 "$tmp/nightly2.json" "$bin" --config "$tmp/nightly.toml" --dry-run --output json -q
NIGHTLY_STATS2=$(mock_stats | jq -c 'del(.unauthorized)')
stop_mock
export AGENTSYNC_STATE_DIR=$tmp/state
# The floor: source pages / 4 at a time x 150 ms; directory requests (token
# included) at 4 per second, the first one at once: (n - 1) / 4 s + 150 ms.
nightly_floor() {
  local stats=$1 src dir
  src=$(jq -r '.source_pages' <<<"$stats")
  dir=$(sum_stats "$stats" token service_provider_config scim_list)
  awk -v s="$src" -v d="$dir" 'BEGIN { a = int((s + 3) / 4) * 0.15; b = (d - 1) / 4 + 0.15; printf "%.2f s (source %d pages: %.2f s; directory %d requests at 4/s: %.2f s)", (a > b ? a : b), s, a, d, b }'
}
NIGHTLY_FLOOR1=$(nightly_floor "$NIGHTLY_STATS1")
NIGHTLY_FLOOR2=$(nightly_floor "$NIGHTLY_STATS2")

# ---------------------------------------------------------------- report

f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 0.005; printf "%.2f", a / b }'; }

declare -A LABEL=(
  [w1_agentsync]="W1 agentsync fetch (concurrency 4)"
  [w1_floor]="W1 floor: ureq 4 threads + serde"
  [w1l_agentsync]="W1L agentsync fetch, $large users"
  [w1l_floor]="W1L floor, $large users"
  [w3l_agentsync]="W3L agentsync --dry-run, $large x $large"
  [w3p_agentsync]="W3P the same, update = \"put\" (PUT-mode listing)"
  [nightly1]="nightly: Talkdesk preset, 10000 x 10000, 1st"
  [nightly2]="nightly: the same, 2nd (config kept)"
  [w1_curljq]="W1 curl+jq loop"
  [w1_python]="W1 python3 stdlib"
  [w3_agentsync]="W3 agentsync --dry-run (plan)"
  [w2_agentsync]="W2 agentsync fetch (concurrency 4)"
  [w2_curljq]="W2 curl+jq loop"
  [w2_python]="W2 python3 stdlib"
  [w4_curl]="W4 curl: the one page (context)"
  [w4_agentsync]="W4 agentsync fetch of the saved page (+HTTP)"
  [w4_jq]="W4 jq on the saved page"
  [action]="action punch, 1 of 10000 agents (SCIM)"
  [action_td]="action punch, 1 of 10000 agents (Talkdesk)"
  [start]="process start: agentsync --version"
)

echo
echo "== results ($users users; runs: the run of median wall time is shown; CPU = user + sys of the command and its children)"
echo
printf '| %-44s | %4s | %8s | %8s | %8s | %9s | %9s | %8s |\n' measurement runs "wall s" "user s" "sys s" "CPU s" "peak MB" users
printf '| %-44s | %4s | %8s | %8s | %8s | %9s | %9s | %8s |\n' ':--' '--:' '--:' '--:' '--:' '--:' '--:' '--:'
for k in "${keys[@]}"; do
  n=${COUNT[$k]:-}
  if [[ $k == w3_agentsync ]]; then
    n=$(jq -r '.source.users // empty' "$tmp/plan.json" 2>/dev/null || true)
  elif [[ $k == w3l_agentsync ]]; then
    n=$(jq -r '.source.users // empty' "$tmp/planl.json" 2>/dev/null || echo "$large")
  elif [[ $k == w4_curl ]]; then
    n="${page_mb} MB"
  fi
  if [[ ${RC[$k]} != 0 ]]; then
    n="exit ${RC[$k]}"
  fi
  printf '| %-44s | %4s | %8s | %8s | %8s | %9s | %9s | %8s |\n' "${LABEL[$k]}" "${RUNS[$k]}" \
    "$(f2 "${WALL[$k]}")" "$(f2 "${USR[$k]}")" "$(f2 "${SYS[$k]}")" \
    "$(f2 "$(awk -v u="${USR[$k]}" -v s="${SYS[$k]}" 'BEGIN { print u + s }')")" \
    "$(mb "${RSS[$k]}")" "$n"
done

conc_floor=$(awk -v p="$pages" -v c="$concurrency" -v l="$latency_ms" 'BEGIN { printf "%.2f", int((p + c - 1) / c) * l / 1000 }')
seq_floor=$(awk -v p="$pages" -v l="$latency_ms" 'BEGIN { printf "%.2f", p * l / 1000 }')
w4_rate_a=$(awk -v n="$users" -v w="${WALL[w4_agentsync]}" 'BEGIN { if (w == 0) w = 0.005; printf "%.0f", n / w }')
w4_rate_j=$(awk -v n="$users" -v w="${WALL[w4_jq]}" 'BEGIN { if (w == 0) w = 0.005; printf "%.0f", n / w }')

echo
echo "W2 floors at $latency_ms ms/request, $pages pages: concurrent (ceil($pages/$concurrency) x $latency_ms ms) = ${conc_floor} s; sequential ($pages x $latency_ms ms) = ${seq_floor} s"
echo "W3 plan: $plan_summary"
echo "W4 mapping rate: agentsync $w4_rate_a users/s (includes one loopback HTTP transfer of the ${page_mb} MB page), jq $w4_rate_j users/s"
echo "Mock keep-alive check (one ${page_size}-user page requested 3 times on one connection): $keepalive_ms ms"
echo "Same users (sorted id+email lists equal, $users each): W1 ${EQUAL[W1]} (with the floor)  W2 ${EQUAL[W2]}  W4 ${EQUAL[W4]}"
n_over_r=$(awk -v w="${AP_WRITES[a40]}" 'BEGIN { printf "%.2f", w / 4 }')
echo "Apply (whole sync wall, CPU; the writes' wall from the listing's end to the last write; directory requests per write = (scim_put + scim_patch + scim_get) / writes):"
echo "  a40   ${AP_WRITES[a40]} writes, [sink] rate_limit = 4, 300 ms latency: sync ${AP_WALL[a40]} s (CPU ${AP_CPU[a40]} s), writes ${AP_WWALL[a40]} s (N/r = ${n_over_r} s), ${AP_RPW[a40]} requests per write"
echo "  a2000 ${AP_WRITES[a2000]} writes, no rate limit, no latency: sync ${AP_WALL[a2000]} s (CPU ${AP_CPU[a2000]} s), writes ${AP_WWALL[a2000]} s, ${AP_RPW[a2000]} requests per write"
echo "Action punch, one agent of 10000 (plain SCIM): ${AP_REQ[action]} requests + ${AP_TOKEN[action]} token, ${AP_MS[action]} ms wall (median of 5)"
echo "Action punch, one agent of 10000 (--talkdesk, its preset's rate_limit = 4): ${AP_REQ[action_td]} requests + ${AP_TOKEN[action_td]} token, ${AP_MS[action_td]} ms wall (median of 5)"
echo "Process start (agentsync --version): ${AP_MS[start]} ms wall (median of 5)"
echo "Nightly (Talkdesk preset, rate_limit 4, 150 ms, 10000 x 10000, largest page 1000, page_size unset):"
echo "  1st ${WALL[nightly1]} s, floor $NIGHTLY_FLOOR1; requests $NIGHTLY_STATS1"
echo "  2nd ${WALL[nightly2]} s, floor $NIGHTLY_FLOOR2; requests $NIGHTLY_STATS2"
if ((large != users)); then
  echo "W3L plan: $large_summary"
  echo "Same users at $large (agentsync and the floor): W1L ${EQUAL[W1L]}"
fi

met=0
total=0
# target TEXT MEASURED CONDITION(awk, on x)
target() {
  local text=$1 measured=$2 cond=$3 shown=$4 ok verdict
  ok=$(awk -v x="$measured" "BEGIN { print (($cond) ? 1 : 0) }")
  total=$((total + 1))
  if ((ok)); then
    verdict=MET
    met=$((met + 1))
  else
    verdict="NOT MET"
  fi
  printf '| %-52s | %-28s | %-7s |\n' "$text" "$shown" "$verdict"
}

r_curl=$(div "${WALL[w1_curljq]}" "${WALL[w1_agentsync]}")
r_py=$(div "${WALL[w1_python]}" "${WALL[w1_agentsync]}")
r_w1_floor=$(div "${WALL[w1_agentsync]}" "${WALL[w1_floor]}")
r_floor=$(div "${WALL[w2_agentsync]}" "$conc_floor")
r_w4=$(div "${WALL[w4_jq]}" "${WALL[w4_agentsync]}")
w1_mb=$(mb "${RSS[w1_agentsync]}")
w3_mb=$(mb "${RSS[w3_agentsync]}")
w3_s=$(f2 "${WALL[w3_agentsync]}")
[[ ${RC[w3_agentsync]} == 0 ]] || w3_s=999
# The large rows: their own section, or the main one when N is already L.
if ((large != users)); then k1=w1l_agentsync kf=w1l_floor k3=w3l_agentsync; else k1=w1_agentsync kf=w1_floor k3=w3_agentsync; fi
r_w1l_floor=$(div "${WALL[$k1]}" "${WALL[$kf]}")
w1l_s=$(f2 "${WALL[$k1]}")
[[ ${RC[$k1]} == 0 ]] || w1l_s=999
w3l_s=$(f2 "${WALL[$k3]}")
[[ ${RC[$k3]} == 0 ]] || w3l_s=999
w3l_mb=$(mb "${RSS[$k3]}")
[[ ${RC[$k3]} == 0 ]] || w3l_mb=99999

echo
echo "== targets"
echo
printf '| %-52s | %-28s | %-7s |\n' target measured verdict
printf '| %-52s | %-28s | %-7s |\n' ':--' ':--' ':--'
target "W1 ($users) agentsync >= 8x faster than python3" "$r_py" "x >= 8" "${r_py}x"
target "W1 ($users) agentsync within 2x of the floor" "$r_w1_floor" "x <= 2" "${r_w1_floor}x of $(f2 "${WALL[w1_floor]}") s"
target "W1 ($users) agentsync peak memory <= 40 MB" "$w1_mb" "x <= 40" "$w1_mb MB"
target "W1 ($large) agentsync <= 1.0 s" "$w1l_s" "x <= 1.0" "$w1l_s s (floor $(f2 "${WALL[$kf]}") s, ${r_w1l_floor}x)"
target "W3 ($users x $users) dry-run plan <= 0.3 s" "$w3_s" "x <= 0.3" "$w3_s s (exit ${RC[w3_agentsync]})"
target "W3 ($large x $large) dry-run plan <= 3.5 s" "$w3l_s" "x <= 3.5" "$w3l_s s (exit ${RC[$k3]})"
target "W3 ($large x $large) peak memory <= 400 MB" "$w3l_mb" "x <= 400" "$w3l_mb MB"
if [[ -n ${RSS[w3p_agentsync]:-} ]]; then
  w3p_mb=$(mb "${RSS[w3p_agentsync]}")
  [[ ${RC[w3p_agentsync]} == 0 ]] || w3p_mb=99999
  target "W3P PUT-mode listing: peak <= W3L peak + 150 MB" "$(awk -v p="$w3p_mb" -v l="$w3l_mb" 'BEGIN { print p - l }')" "x <= 150" "$w3p_mb MB (W3L $w3l_mb MB)"
fi
n2=$(f2 "${WALL[nightly2]}")
[[ ${RC[nightly2]} == 0 ]] || n2=999
target "Nightly (Talkdesk, 10000 agents, 4/s, 150 ms) <= 5 s" "$n2" "x <= 5" "$n2 s (1st $(f2 "${WALL[nightly1]}") s)"
target "W1 agentsync >= 10x faster than curl+jq" "$r_curl" "x >= 10" "${r_curl}x"
target "W2 agentsync within 1.5x of the concurrent floor" "$r_floor" "x <= 1.5" "${r_floor}x of ${conc_floor} s"
target "W4 agentsync at least as fast as jq" "$r_w4" "x >= 1" "${r_w4}x (jq wall / agentsync)"
a40_ratio=$(div "${AP_WWALL[a40]:-999}" "$n_over_r")
target "Apply: 40 writes at rate 4, writes' wall <= 1.05 x N/r" "$a40_ratio" "x <= 1.05" "${AP_WWALL[a40]:-?} s, ${a40_ratio}x of ${n_over_r} s"
rpw_max=$(awk -v a="${AP_RPW[a40]}" -v b="${AP_RPW[a2000]}" 'BEGIN { if (a == "n/a" || b == "n/a") print 99; else print (a > b ? a : b) }')
target "Apply: one request per write (a40, a2000)" "$rpw_max" "x <= 1" "${AP_RPW[a40]} / ${AP_RPW[a2000]} per write"
action_req=$(awk -v a="${AP_REQ[action]}" -v b="${AP_REQ[action_td]}" 'BEGIN { print (a > b ? a : b) }')
target "Action: <= 2 requests plus a token" "$action_req" "x <= 2" "${AP_REQ[action]} (SCIM), ${AP_REQ[action_td]} + ${AP_TOKEN[action_td]} token"
[[ ${RC[action]} == 0 ]] || AP_MS[action]=99999
[[ ${RC[action_td]} == 0 ]] || AP_MS[action_td]=99999
target "Action: <= 50 ms on loopback (plain SCIM)" "${AP_MS[action]}" "x <= 50" "${AP_MS[action]} ms (start ${AP_MS[start]} ms)"
target "Action: <= 50 ms on loopback (Talkdesk preset)" "${AP_MS[action_td]}" "x <= 50" "${AP_MS[action_td]} ms"
echo
echo "$met of $total targets met."

for k in "${keys[@]}"; do
  if [[ ${RC[$k]} != 0 ]]; then
    failures=$((failures + 1))
  fi
done

echo
echo "== agentsync listen (bench/listen.sh)"
bash "$bench/listen.sh" || failures=$((failures + 1))

if ((failures)); then
  echo "FAIL: $failures command failure(s) or output mismatch(es) above." >&2
  exit 1
fi
