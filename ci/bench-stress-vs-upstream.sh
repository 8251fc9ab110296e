#!/usr/bin/env bash
# Benchmark: granule stress against the Linux selftest mmu_stress_test it ports, in the
# x86 test bed (nested SVM+NPT), same configuration (-c 2 -m 1 -s 1, skip on fault),
# alternated, ROUNDS times each. Prints each phase's median for both and the ratio
# granule/upstream. A measurement, not a test.
# Usage: ci/bench-stress-vs-upstream.sh [ROUNDS]    (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
resources/bed-prepare.sh >/dev/null
upstream=$(resources/upstream-selftest.sh)
source .cache/bed/manifest.env
kdir=$(dirname "$X86_64_KERNEL")
img=.cache/bed/x86_64-bench.cpio.gz
resources/initramfs.sh amd64 "$kdir" /bin/busybox target/x86_64-unknown-linux-gnu/release/granule "$img" "$upstream"
ci/bed-run.sh x86_64 "$img" stress-vs-upstream $((rounds * 400 + 120)) 4G "granule.rounds=$rounds"
log=target/bed-logs/x86_64-stress-vs-upstream.log
python3 - "$log" <<'PY'
import re, statistics, sys
runs = {"granule": [], "upstream": []}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"GRANULE-BED: LINE (\w+) (run1 = .*)", line.strip())
    if m:
        runs[m.group(1)].append({k: float(v) for k, v in re.findall(r"(\w+) = ([0-9.]+)s", m.group(2))})
print(f"{'phase':<6} {'granule s':>12} {'upstream s':>12} {'ratio':>7}   ({len(runs['granule'])} rounds each, medians)")
for p in ["run1", "reset", "run2", "ro", "rw"]:
    g = statistics.median(r[p] for r in runs["granule"])
    u = statistics.median(r[p] for r in runs["upstream"])
    print(f"{p:<6} {g:12.6f} {u:12.6f} {g / u if u else float('nan'):7.2f}")
PY
