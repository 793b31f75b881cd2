#!/usr/bin/env bash
# Several hubs on one PostgreSQL, and the peer, in one run:
#   benches/cluster.sh URL
# 1. the peer, AutoGen's distributed runtime (gRPC): host, echo worker and sender as three
#    Python processes (benches/autogen/peer.py, in target/autogen-venv made from
#    benches/autogen/requirements.txt): 2,000 round trips sequentially, 10,000 with 100 in
#    flight; nothing stored;
# 2. colloquy load on the schema colloquy_bench_cluster (every round trip durable: request
#    and reply committed): same hub and across hubs sequentially (1 x 2,000) and with 100 in
#    flight (100 x 100), and 1, 2, 3 hubs with 64 in flight (1,000 x 20), each with the
#    database's transactions per round trip (pg_stat_database.xact_commit before and after;
#    heartbeats and setup included);
# 3. the limit: raw single-row commits at one client (pgbench, prepared), of which a durable
#    round trip needs two;
# then prints each figure and its ratio to the peer and to the limit. The schema is dropped.
set -euo pipefail
url="${1:?usage: benches/cluster.sh postgres://user@host:port/database}"
here="$(cd "$(dirname "$0")" && pwd)"
colloquy="${COLLOQUY_BIN:-$here/../target/release/colloquy}"
venv="$here/../target/autogen-venv"
schema=colloquy_bench_cluster
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/autogen/requirements.txt"
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  psql "$url" -qAt -c "SET client_min_messages = warning" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
logs="$(mktemp -d)"
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ready() { # log: waits for the process's ready line
  for _ in $(seq 300); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "not ready: $1" >&2; cat "$1" >&2; return 1
}
"$venv/bin/python" "$here/autogen/peer.py" host "$port" >"$logs/host" 2>&1 & pids+=($!)
ready "$logs/host"
"$venv/bin/python" "$here/autogen/peer.py" worker "127.0.0.1:$port" >"$logs/worker" 2>&1 & pids+=($!)
ready "$logs/worker"
peer_seq=$("$venv/bin/python" "$here/autogen/peer.py" sender "127.0.0.1:$port" 2000 1 2>/dev/null)
peer_100=$("$venv/bin/python" "$here/autogen/peer.py" sender "127.0.0.1:$port" 10000 100 2>/dev/null)
commits() {
  psql "$url" -qAt -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
}
load() { # a fresh schema for each run; prints the report with "commits" added
  psql "$url" -qAt -c "SET client_min_messages = warning" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
  sleep 1 # the server's statistics of earlier sessions are flushed
  local before report after
  before=$(commits)
  report=$("$colloquy" load --json --db "$url" --schema "$schema" "$@")
  sleep 1
  after=$(commits)
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["commits"] = int(sys.argv[2]); print(json.dumps(r))' "$report" "$((after - before))"
}
raw_commit() { # single-row insert transactions per second at one client
  psql "$url" -qAt -c "SET client_min_messages = warning" -c "DROP SCHEMA IF EXISTS $schema CASCADE" \
    -c "CREATE SCHEMA $schema" -c "CREATE TABLE $schema.raw (id bigserial PRIMARY KEY, v jsonb)" >/dev/null
  echo "INSERT INTO $schema.raw (v) VALUES ('{\"text\": \"a turn\"}');" > "$logs/raw.sql"
  pgbench -n -M prepared -c 1 -T 5 -f "$logs/raw.sql" "$url" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
raw=$(raw_commit)
same_seq=$(load --hubs 1 --conversations 1 --turns 2000 --parallel 1)
cross_seq=$(load --hubs 2 --cross-hub --conversations 1 --turns 2000 --parallel 1)
same_100=$(load --hubs 1 --conversations 100 --turns 100 --parallel 100)
cross_100=$(load --hubs 2 --cross-hub --conversations 100 --turns 100 --parallel 100)
hubs_1=$(load --hubs 1 --conversations 1000 --turns 20 --parallel 64)
hubs_2=$(load --hubs 2 --conversations 1000 --turns 20 --parallel 64)
hubs_3=$(load --hubs 3 --conversations 1000 --turns 20 --parallel 64)
python3 - "$raw" "$peer_seq" "$peer_100" "$same_seq" "$cross_seq" "$same_100" "$cross_100" "$hubs_1" "$hubs_2" "$hubs_3" <<'PY'
import json, sys
raw = float(sys.argv[1])
peer_seq, peer_100, same_seq, cross_seq, same_100, cross_100, h1, h2, h3 = map(json.loads, sys.argv[2:])
def line(label, run, peer=None):
    ratio = f" = {run['round_trips_per_sec'] / peer['round_trips_per_sec']:.2f}x the peer" if peer else ""
    per = f"  {run['commits'] / run['round_trips']:.2f} commits/rt" if "commits" in run else ""
    print(f"{label:<44} {run['round_trips_per_sec']:>7.0f} round trips/s{ratio:<20} p50 {run['p50_us'] / 1e3:6.2f} ms  p99 {run['p99_us'] / 1e3:6.2f} ms{per}")
line("AutoGen gRPC, 3 processes, sequential", peer_seq)
line("AutoGen gRPC, 3 processes, 100 in flight", peer_100)
line("colloquy same hub, sequential", same_seq, peer_seq)
line("colloquy across hubs, sequential", cross_seq, peer_seq)
line("colloquy same hub, 100 in flight", same_100, peer_100)
line("colloquy across hubs, 100 in flight", cross_100, peer_100)
line("colloquy 1 hub, 64 in flight", h1)
line("colloquy 2 hubs, 64 in flight", h2)
line("colloquy 3 hubs, 64 in flight", h3)
print(f"across hubs / same hub, sequential: throughput {cross_seq['round_trips_per_sec'] / same_seq['round_trips_per_sec']:.2f}x, latency p50 +{(cross_seq['p50_us'] - same_seq['p50_us']) / 1e3:.2f} ms, p99 x{cross_seq['p99_us'] / same_seq['p99_us']:.1f}")
print(f"across hubs / same hub, 100 in flight: throughput {cross_100['round_trips_per_sec'] / same_100['round_trips_per_sec']:.2f}x")
print(f"limit: {raw:.0f} raw single-row commits/s at one client = {raw / 2:.0f} durable round trips/s (two commits each); "
      f"same hub sequential {same_seq['round_trips_per_sec'] / (raw / 2):.2f}x of it, across hubs {cross_seq['round_trips_per_sec'] / (raw / 2):.2f}x; "
      f"the peer sequential is {peer_seq['round_trips_per_sec'] / (raw / 2):.2f}x of it")
PY
