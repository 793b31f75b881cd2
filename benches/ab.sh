#!/usr/bin/env bash
# Compares `colloquy load` throughput of two or more builds on this noisy VM: runs them
# alternately N times with the same arguments and prints each build's median round trips/s
# (with `--via a2a`: colloquy's requests/s, not the bare echo's or the peer's; with
# `--via mcp`: the MCP calls').
#
#   benches/ab.sh 7 "--store memory --conversations 1000 --turns 50" old/colloquy target/release/colloquy
#   benches/ab.sh 6 "--via a2a --store sqlite --conversations 5000 --turns 1" old/colloquy new/colloquy
#
# Never measure while a build or CI runs; compare medians of the same run, not numbers
# taken minutes apart.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 RUNS \"LOAD ARGS\" BINARY [BINARY ...]" >&2
  exit 2
fi
runs=$1; shift
args=$1; shift
# The rate a run reports: round trips/s in process; over the network, requests/s of the
# MCP calls (`--via mcp`) or of colloquy's A2A agent (`--via a2a`).
rate='
import json, sys
report = json.load(sys.stdin)
if "targets" in report:
    names = [t["target"] for t in report["targets"]]
    wanted = next((n for n in names if n.startswith("MCP")), None) or next(n for n in names if n.startswith("colloquy"))
    print(next(t["requests_per_sec"] for t in report["targets"] if t["target"] == wanted))
else:
    print(report["round_trips_per_sec"])
'
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$runs"); do
  for n in $(seq 1 $#); do
    bin=${!n}
    # shellcheck disable=SC2086 # the load arguments are meant to split
    "$bin" load --json $args | python3 -c "$rate" >> "$out/$n"
  done
done
for n in $(seq 1 $#); do
  sort -n "$out/$n" | awk -v name="${!n}" '{v[NR]=$1} END {
    printf "%s: median %.0f per second (", name, v[int((NR+1)/2)];
    for (i = 1; i <= NR; i++) printf "%s%.0f", (i > 1 ? " " : ""), v[i];
    print ")" }'
done
