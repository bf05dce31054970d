#!/usr/bin/env bash
# Benchmark baseline (W1/W2 "curl+jq"): the shell loop an admin would write
# instead of agentsync. It reads the bundled mock's /users/not-formatted page by
# page (page=1, 2, ...), one curl per page piped to one jq, maps each record with
# the same jq expression the agentsync config uses, and stops when the number of
# records read reaches the page's .total (or on an empty page). Sequential, no
# retries: the cheapest honest version. Prints one {id,email} JSON object a line.
#
#   bash bench/fetch_users.sh http://127.0.0.1:8787 > users.jsonl
set -euo pipefail

base=${1:?usage: fetch_users.sh BASE_URL}
map='select(.active != false) | {id: .punch_clock_id, email: .punch_clock_email}'

page=1
collected=0
while :; do
  # Mapped users first, then one last line "COUNT TOTAL" for the loop.
  out=$(curl -sfS "$base/users/not-formatted?page=$page" |
    jq -c "(.users[] | $map), \"\(.count // (.users | length)) \(.total)\"")
  meta=${out##*$'\n'}
  if [[ $out == *$'\n'* ]]; then
    printf '%s\n' "${out%$'\n'*}"
  fi
  meta=${meta//\"/}
  count=${meta%% *}
  total=${meta##* }
  collected=$((collected + count))
  if ((count == 0 || collected >= total)); then
    break
  fi
  page=$((page + 1))
done
