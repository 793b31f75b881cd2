#!/usr/bin/env bash
# Compares `colloquy load` throughput of two or more builds on this noisy VM: runs them
# alternately N times with the same arguments and prints each build's median round trips/s.
#
#   benches/ab.sh 7 "--store memory --conversations 1000 --turns 50" old/colloquy target/release/colloquy
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
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$runs"); do
  for n in $(seq 1 $#); do
    bin=${!n}
    # shellcheck disable=SC2086 # the load arguments are meant to split
    "$bin" load --json $args | sed -n 's/.*"round_trips_per_sec": *\([0-9.]*\).*/\1/p' >> "$out/$n"
  done
done
for n in $(seq 1 $#); do
  sort -n "$out/$n" | awk -v name="${!n}" '{v[NR]=$1} END {
    printf "%s: median %.0f round trips/s (", name, v[int((NR+1)/2)];
    for (i = 1; i <= NR; i++) printf "%s%.0f", (i > 1 ? " " : ""), v[i];
    print ")" }'
done
