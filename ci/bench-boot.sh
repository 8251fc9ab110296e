#!/usr/bin/env bash
# Benchmark: boot to guest userspace with granule vs QEMU -accel kvm, in a test bed
# (x86: nested SVM+NPT, q35; arm64: KVM at EL2 in TCG's virt, VHE), same Debian kernel,
# initramfs and command line (the console's name aside on arm64), alternated ROUNDS
# times. Prints each run, both medians and the ratio granule/QEMU.
# A measurement, not a test (goal: ratio <= 0.5).
# With BOOT_DMESG=1, one more boot of each VMM prints the guest kernel's log with its
# timestamps, kept as target/bed-logs/ARCH-boot-dmesg-{granule,qemu}.txt (ROUNDS may
# then be 0).
# Before each timed boot the bed recycles the last VM's memory (fresh_pages in
# resources/bed/scenarios/bench-boot: a process faults in 1 GiB of THP and exits; its
# time is printed, not counted): taking the blocks a VM just freed is slow in the
# bed (most likely TCG invalidating what it translated from the last guest's code), a
# cost of the bed that otherwise lands on whichever VMM boots next.
# BOOT_FRESH_PAGES=0 leaves it out.
# Usage: [BOOT_DMESG=1] [BOOT_FRESH_PAGES=0] ci/bench-boot.sh [ROUNDS] [VCPUS] [x86_64|aarch64]    (defaults 5, 1, x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} cpus=${2:-1} arch=${3:-x86_64}
resources/bed-prepare.sh >/dev/null
source .cache/bed/manifest.env
case $arch in
    x86_64) deb=amd64 boot=$X86_64_BOOT_INITRD bed="x86 bed (nested SVM+NPT)"
        # The bed configuration of the boot tests (tests/bed; README, "How the test
        # beds run"): one bed vCPU. GRANULE_BED_SMP overrides it for experiments.
        export GRANULE_BED_SMP=${GRANULE_BED_SMP:-1} ;;
    aarch64) deb=arm64 boot=$AARCH64_BOOT_INITRD bed="arm64 bed (VHE)" ;;
    *) echo "unknown arch $arch: use x86_64 or aarch64" >&2; exit 2 ;;
esac
img=.cache/bed/$arch-bench-boot.cpio.gz
resources/qemu-payload.sh $deb .cache/bed/qemu-payload-$deb.cpio.gz
cat "$boot" .cache/bed/qemu-payload-$deb.cpio.gz > "$img"
# Each boot may take up to 120 s (arm64 and 2-vCPU x86 boots take 15-40 s here).
ci/bed-run.sh "$arch" "$img" bench-boot $((rounds * 400 + 120 + ${BOOT_DMESG:-0} * 400)) 3G \
    "granule.rounds=$rounds granule.boot_cpus=$cpus granule.boot_timeout=120 granule.boot_dmesg=${BOOT_DMESG:-0} granule.fresh_pages=${BOOT_FRESH_PAGES:-1}"
log=target/bed-logs/$arch-bench-boot.log
if [ "${BOOT_DMESG:-0}" = 1 ]; then
    for vmm in granule qemu; do
        sed -n "s/^GRANULE-BED: DMESG $vmm //p" "$log" > "target/bed-logs/$arch-boot-dmesg-$vmm.txt"
    done
fi
[ "$rounds" -gt 0 ] || exit 0
python3 - "$log" "$cpus" "$bed" <<'PY'
import re, statistics, sys
runs = {"granule": [], "qemu": [], "granule-first": [], "granule-guest": [], "granule-elf": []}
thp, fresh, recycle = "?", "?", []
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("GRANULE-BED: LINE thp "):
        thp = line.strip().split(" ", 3)[3]
    if line.startswith("GRANULE-BED: LINE fresh_pages "):
        fresh = "on" if line.split()[-1] == "1" else "off"
    if line.startswith("GRANULE-BED: FRESH "):
        recycle.append(float(line.split()[-1]))
    m = re.match(r"GRANULE-BED: LINE (granule-first|granule-guest|granule-elf|granule|qemu) (\S+)", line.strip())
    if m:
        runs[m.group(1)].append(m.group(2))
print(f"boot to guest userspace, {sys.argv[2]} vCPU(s), {sys.argv[3]}, bed THP {thp}, ms:")
print(f"  memory recycled before each boot: {fresh}" + (f" (median {statistics.median(recycle):.0f} ms, untimed)" if recycle else ""))
for vmm, vals in runs.items():
    if vals:
        print(f"  {vmm:<14} {' '.join(vals)}")
ok = {k: [float(v) for v in vals if v != "FAIL"] for k, vals in runs.items()}
if not ok["granule"] or not ok["qemu"]:
    sys.exit("no successful runs to compare")
g, q = statistics.median(ok["granule"]), statistics.median(ok["qemu"])
fails = {k: sum(v == "FAIL" for v in vals) for k, vals in runs.items()}
def fields(tag, pattern):
    """Per run label, each field's values from the log's TAG lines (granule's --json)."""
    out = {}
    for line in open(sys.argv[1], errors="replace"):
        m = re.match(rf"GRANULE-BED: {tag} (\S+) (.*)", line.strip())
        if m:
            for k, v in re.findall(pattern, m.group(2)):
                out.setdefault(m.group(1), {}).setdefault(k, []).append(float(v))
    return out
phases = fields("PHASES", r'"(\w+)_ms":([0-9.]+)')
if phases:
    print("granule's boot phases (--json boot.phases), medians, ms:")
    for vmm, ps in phases.items():
        print(f"  {vmm:<14} " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in ps.items()))
feet = fields("FOOTPRINT", r'"(\w+)":([0-9.]+)')
if feet:
    print("granule's footprint (--json footprint), medians: memory besides guest RAM, main to first KVM_RUN:")
    for vmm, f in feet.items():
        mib = statistics.median(f.get("vmm_bytes", [0])) / 2**20
        print(f"  {vmm:<14} {mib:.1f} MiB, {statistics.median(f.get('first_kvm_run_ms', [0])):.0f} ms")
ended = fields("ENDED", r'"(\w+)":([0-9.]+)')
if ended:
    print("granule's process ended (after the marker: guest powered off; a first boot's cache entry written), medians, ms:")
    for vmm, e in ended.items():
        print(f"  {vmm:<14} {statistics.median(e['ended_ms']):.0f}")
moved = fields("VMSTAT", r'"(\w+)":(-?[0-9]+)')
if moved:
    print("the bed kernel's counters during each granule boot (/proc/vmstat), medians:")
    for vmm, c in moved.items():
        print(f"  {vmm:<14} " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in c.items()))
print(f"median   granule {g:.0f} ms   qemu {q:.0f} ms   ratio granule/qemu {g / q:.2f}   (failed runs: {fails})")
labels = {
    "granule-first": "granule, bzImage decompressed on the host, empty cache",
    "granule-guest": "granule, bzImage decompressed in the guest",
    "granule-elf": "granule, the ELF vmlinux",
}
for k, label in labels.items():
    if ok[k]:
        e = statistics.median(ok[k])
        print(f"median   {label}: {e:.0f} ms   ratio to qemu {e / q:.2f}")
PY
