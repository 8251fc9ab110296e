#!/usr/bin/env bash
# Benchmark: for each backing, the time to map and prefault guest RAM on the host, and
# the time the guest takes to write every page of it (first touch), with and without
# prefault. A measurement, not a test: it prints a table and exits 0 unless granule fails.
#
# Usage: ci/bench-memory.sh [SIZE_GIB] [VCPUS]      (defaults: 4 GiB, 2 vCPUs)
# Needs root for the hugetlb pools; it sizes them for the run and restores them.
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:-4}
vcpus=${2:-2}
cargo build --release -q -p granule-vmm
bin=target/release/granule
out=$(mktemp -d)
trap 'rm -rf "$out"; restore' EXIT

p2=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
p1=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
old2=$(cat $p2); old1=$(cat $p1 2>/dev/null || echo 0)
restore() { echo "$old2" > $p2 2>/dev/null || true; echo "$old1" > $p1 2>/dev/null || true; }

echo $((gib * 512)) > $p2 2>/dev/null || true
echo 1 > /proc/sys/vm/compact_memory 2>/dev/null || true
echo "$gib" > $p1 2>/dev/null || true
have1=$(cat $p1 2>/dev/null || echo 0)

printf '%-11s %-8s %9s %11s %12s %9s %9s\n' backing prefault "map s" "prefault s" "guest touch s" "2M leaves" "4K leaves"
for backing in 4k thp hugetlb-2m hugetlb-1g; do
    if [ "$backing" = hugetlb-1g ] && [ "$have1" -lt "$gib" ]; then
        echo "hugetlb-1g: skipped, the kernel gave $have1 of $gib 1 GiB pages"
        continue
    fi
    for prefault in off on; do
        tag="$backing-$prefault"
        "$bin" run touch -c "$vcpus" -m "size=${gib}G,backing=$backing,prefault=$prefault" --quiet \
            --json "$out/$tag.json" --report "$out/$tag.report.json" >/dev/null 2>"$out/$tag.log" \
            || { echo "$tag: granule failed:"; tail -5 "$out/$tag.log"; exit 1; }
        python3 - "$out/$tag.json" "$out/$tag.report.json" "$backing" "$prefault" <<'PY'
import json, sys
run = json.load(open(sys.argv[1])); rep = json.load(open(sys.argv[2]))
z = rep["zones"][0]; obs = rep.get("observed") or {}
pf = "-" if z["prefault_s"] is None else f'{z["prefault_s"]:.3f}'
print(f'{sys.argv[3]:<11} {sys.argv[4]:<8} {z["map_s"]:9.3f} {pf:>11} {run["elapsed_s"]:12.3f} '
      f'{obs.get("2097152", "-"):>9} {obs.get("4096", "-"):>9}')
PY
    done
done
echo "host: $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), KVM backend: $("$bin" probe --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvm"]["backend"]["kind"])')"
