#!/usr/bin/env bash
# Benchmark: boot to guest userspace with granule vs qemu-system-x86_64 -accel kvm, in
# the x86 test bed (nested SVM+NPT), same Debian kernel, initramfs and command line,
# alternated ROUNDS times. Prints each run, both medians and the ratio granule/QEMU.
# A measurement, not a test (goal: ratio <= 0.5).
# Usage: ci/bench-boot.sh [ROUNDS] [VCPUS]    (defaults 5, 1)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} cpus=${2:-1}
resources/bed-prepare.sh >/dev/null
source .cache/bed/manifest.env
img=.cache/bed/x86_64-bench-boot.cpio.gz
resources/qemu-payload.sh .cache/bed/qemu-payload.cpio.gz
cat "$X86_64_BOOT_INITRD" .cache/bed/qemu-payload.cpio.gz > "$img"
# The bed configuration of the boot tests (tests/bed; README, "How the test beds run"):
# one bed vCPU. GRANULE_BED_TCG / GRANULE_BED_SMP override it for experiments.
# Each boot may take up to 120 s (2-vCPU boots take 15-35 s here).
GRANULE_BED_SMP=${GRANULE_BED_SMP:-1} ci/x86-bed-run.sh "$img" bench-boot $((rounds * 400 + 120)) 3G \
    "granule.rounds=$rounds granule.boot_cpus=$cpus granule.boot_timeout=120"
log=target/bed-logs/x86_64-bench-boot.log
python3 - "$log" "$cpus" <<'PY'
import re, statistics, sys
runs = {"granule": [], "qemu": [], "granule-elf": []}
thp = "?"
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("GRANULE-BED: LINE thp "):
        thp = line.strip().split(" ", 3)[3]
    m = re.match(r"GRANULE-BED: LINE (granule-elf|granule|qemu) (\S+)", line.strip())
    if m:
        runs[m.group(1)].append(m.group(2))
print(f"boot to guest userspace, {sys.argv[2]} vCPU(s), x86 bed (nested SVM+NPT, bed THP {thp}), ms:")
for vmm, vals in runs.items():
    print(f"  {vmm:<12} {' '.join(vals)}")
ok = {k: [float(v) for v in vals if v != "FAIL"] for k, vals in runs.items()}
if not ok["granule"] or not ok["qemu"]:
    sys.exit("no successful runs to compare")
g, q = statistics.median(ok["granule"]), statistics.median(ok["qemu"])
fails = {k: sum(v == "FAIL" for v in vals) for k, vals in runs.items()}
print(f"median   granule {g:.0f} ms   qemu {q:.0f} ms   ratio granule/qemu {g / q:.2f}   (failed runs: {fails})")
if ok["granule-elf"]:
    e = statistics.median(ok["granule-elf"])
    print(f"median   granule with the ELF vmlinux {e:.0f} ms   ratio to qemu {e / q:.2f}")
PY
