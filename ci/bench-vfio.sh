#!/usr/bin/env bash
# Benchmark: VFIO passthrough in the x86 test bed (nested SVM+NPT, intel-iommu).
#  1. The guest's first touch of the ivshmem device's 1 GiB BAR (one write per 4 KiB
#     page of its first TOUCH_MIB MiB, timed in the guest), BAR mapped 1 GiB-aligned vs
#     4K off (misalign=4K).
#  2. Time to vCPU start of a 1 GiB guest per RAM backing, without a device and with
#     the device (all of RAM pinned and mapped for DMA at start).
# Prints each run and the medians. A measurement, not a test.
# Usage: ci/bench-vfio.sh [ROUNDS] [TOUCH_MIB]    (defaults 3, 128)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} touch_mib=${2:-128}
resources/bed-prepare.sh >/dev/null
source .cache/bed/manifest.env
# 1 GiB of 1G pages and 1 GiB of 2M pages for the hugetlb backings.
# One bed vCPU, as the boot tests run (README, "How the test beds run"): with two under
# single-threaded TCG a 128 MiB touch ran for over 8 minutes.
GRANULE_BED_SMP=${GRANULE_BED_SMP:-1} ci/bed-run.sh x86_64 "$X86_64_BOOT_INITRD" bench-vfio $((rounds * 1500 + 300)) 6G \
    "granule.rounds=$rounds granule.touch_mib=$touch_mib hugepagesz=1G hugepages=1 hugepagesz=2M hugepages=512"
log=target/bed-logs/x86_64-bench-vfio.log
python3 - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"GRANULE-BED: LINE (\S+) (\S+)", line.strip())
    if m:
        runs.setdefault(m.group(1), []).append(m.group(2))
def med(k):
    ok = [float(v) for v in runs.get(k, []) if v != "FAIL"]
    return statistics.median(ok) if ok else float("nan")
print("VFIO in the x86 bed (nested SVM+NPT under intel-iommu, TCG), ms; each run, then the median")
for k, vals in runs.items():
    print(f"  {k:<26} {' '.join(vals):<40} median {med(k):.0f}")
mib = int(runs.get("touch-bytes", ["0"])[0]) >> 20
print(f"first touch of {mib} MiB of the 1 GiB BAR: aligned {med('touch-aligned'):.0f} ms, 4K-misaligned {med('touch-misaligned'):.0f} ms")
for b in ["4k", "thp", "hugetlb-2m", "hugetlb-1g"]:
    n, p = med(f"start-{b}-none"), med(f"start-{b}-pinned")
    print(f"1 GiB guest, backing {b:<10}: vCPUs start at {n:.0f} ms without DMA, {p:.0f} ms with all RAM pinned (+{p - n:.0f} ms)")
PY
