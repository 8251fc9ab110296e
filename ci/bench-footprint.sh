#!/usr/bin/env bash
# Benchmark: granule's own footprint on this host's KVM. For each workload, ROUNDS runs
# of the release binary; the medians of the memory granule holds besides the guest RAM
# the guest touched (process Rss minus the guest zones' Rss, from /proc/self/smaps
# and smaps_rollup when the guest has stopped) and of the time from main() to the first
# KVM_RUN. Both come from the run's --json (`footprint`). A measurement, not a test: it
# prints a table and exits 0 unless granule fails.
#
# Usage: [PROFILE=<cargo profile>] ci/bench-footprint.sh [ROUNDS]   (default 5, release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
profile=${PROFILE:-release}
cargo build --profile "$profile" -q -p granule-vmm
bin=target/$profile/granule
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

workloads=(
    "hello|run hello"
    "hello-4k|run hello -m size=1G,backing=4k"
    "touch-1G-2cpu|run touch -c 2 -m size=1G,backing=thp"
    "spin-4cpu|run spin -c 4 --timeout 1"
)
printf '%-16s %6s %16s %16s %18s\n' workload rounds "granule MiB" "guest RSS MiB" "first KVM_RUN ms"
for w in "${workloads[@]}"; do
    name=${w%%|*}
    read -r -a args <<< "${w#*|}"
    for i in $(seq 1 "$rounds"); do
        # spin ends by its timeout (exit 5); anything else must succeed.
        rc=0
        "$bin" "${args[@]}" --quiet --json "$out/$name-$i.json" >/dev/null 2>"$out/$name-$i.log" || rc=$?
        if [ "$rc" -ne 0 ] && ! { [ "$rc" -eq 5 ] && [ "$name" = spin-4cpu ]; }; then
            echo "$name: granule exited $rc:"; tail -5 "$out/$name-$i.log"; exit 1
        fi
    done
    python3 - "$name" "$rounds" "$out" <<'PY'
import json, statistics, sys
name, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fs = [json.load(open(f"{out}/{name}-{i}.json"))["footprint"] for i in range(1, rounds + 1)]
med = lambda k: statistics.median(f[k] for f in fs)
print(f"{name:<16} {rounds:>6} {med('vmm_bytes') / 2**20:>16.1f} "
      f"{med('guest_resident_bytes') / 2**20:>16.1f} {med('first_kvm_run_ms'):>18.2f}")
PY
done
