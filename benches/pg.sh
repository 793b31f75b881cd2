#!/usr/bin/env bash
# colloquy on PostgreSQL and the raw limit of the same server, in one run:
#   benches/pg.sh URL [SECONDS]
# 1. pgbench (prepared statements, as colloquy uses): single-row insert transactions at 1
#    and 64 clients, 100-row inserts at 64
#    (benches/pg/*.sql, into a scratch table in the schema colloquy_bench_raw);
# 2. colloquy load on the schema colloquy_bench: 1,000 conversations x 20 round trips at 64
#    in flight, then 1 x 5,000 sequential;
# then prints rows written per second by each, and the ratio. Both schemas are dropped.
set -euo pipefail
url="${1:?usage: benches/pg.sh postgres://user@host:port/database [seconds]}"
seconds="${2:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
colloquy="${COLLOQUY_BIN:-$here/../target/release/colloquy}"
raw=colloquy_bench_raw
schema=colloquy_bench
cleanup() {
  psql "$url" -qAt -c "DROP SCHEMA IF EXISTS $raw CASCADE" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
psql "$url" -qAt -c "CREATE SCHEMA $raw" -c "CREATE TABLE $raw.raw_messages (
  id uuid PRIMARY KEY, conversation_id uuid NOT NULL, turn bigint NOT NULL,
  source text NOT NULL, target text NOT NULL, kind text NOT NULL, content json NOT NULL,
  sent_at bigint NOT NULL, UNIQUE (conversation_id, turn))" >/dev/null
pgopts="-c search_path=$raw"
tps() { # clients script -> transactions per second
  PGOPTIONS="$pgopts" pgbench -n -M prepared -f "$here/pg/$2" -c "$1" -j 2 -T "$seconds" "$url" 2>/dev/null \
    | awk '/^tps/ {print int($3)}'
}
one_1=$(tps 1 insert_one.sql)
one_64=$(tps 64 insert_one.sql)
batch_64=$(tps 64 insert_batch.sql)
echo "raw single-row inserts:  1 client $one_1 rows/s, 64 clients $one_64 rows/s"
echo "raw 100-row inserts:     64 clients $((batch_64 * 100)) rows/s"
many=$("$colloquy" load --json --db "$url" --schema "$schema" --conversations 1000 --turns 20 --parallel 64)
psql "$url" -qAt -c "SET client_min_messages = warning" -c "DROP SCHEMA $schema CASCADE" >/dev/null
one=$("$colloquy" load --json --db "$url" --schema "$schema" --conversations 1 --turns 5000)
python3 - "$one_64" "$one_1" "$many" "$one" <<'PY'
import json, sys
raw64, raw1, many, one = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
# A round trip writes four rows: the request and the reply, each with the conversation row.
for label, run, raw in (("1,000 x 20, 64 in flight", many, raw64), ("1 x 5,000 sequential", one, raw1)):
    rows = 4 * run["round_trips_per_sec"]
    print(f"colloquy {label}: {run['round_trips_per_sec']:.0f} round trips/s = {rows:.0f} rows/s "
          f"({rows / raw:.0%} of the raw single-row rate at the same concurrency), "
          f"p50 {run['p50_us']} us, p99 {run['p99_us']} us")
PY
