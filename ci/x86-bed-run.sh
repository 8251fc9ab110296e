#!/usr/bin/env bash
# Runs one scenario in the x86 test bed for a benchmark script and checks that it
# ended with rc=0: the same QEMU command the bed tests use (tests/bed; the ivshmem
# device bound to vfio-pci included), booting
# INITRD. The serial log is target/bed-logs/x86_64-SCENARIO.log.
# TCG threading is per scenario, as in tests/bed: GRANULE_BED_TCG=single (default; stress
# and selftests) or multi (multi-vCPU Linux boots); GRANULE_BED_SMP the bed's vCPUs
# (default 2). See README, "How the test beds run".
# Usage: [GRANULE_BED_TCG=single|multi] [GRANULE_BED_SMP=N] ci/x86-bed-run.sh INITRD SCENARIO TIMEOUT_SECS MEMORY [KERNEL-ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
initrd=$1 scenario=$2 secs=$3 mem=$4; shift 4
source .cache/bed/manifest.env
tcg=${GRANULE_BED_TCG:-single} smp=${GRANULE_BED_SMP:-2}
case $tcg in single|multi) ;; *) echo "GRANULE_BED_TCG=$tcg: use single or multi" >&2; exit 2 ;; esac
log=target/bed-logs/x86_64-$scenario.log
mkdir -p target/bed-logs; rm -f "$log"
timeout "$secs" qemu-system-x86_64 -M q35 -accel tcg,thread=$tcg,tb-size=512 -cpu max -m "$mem" -smp "$smp" \
    -display none -monitor none -no-reboot -serial "file:$log" -kernel "$X86_64_KERNEL" -initrd "$initrd" \
    -append "console=ttyS0 intel_iommu=on panic=-1 loglevel=4 granule.scenario=$scenario $*" \
    -device intel-iommu,intremap=on -object memory-backend-memfd,id=shm,size=1G,share=on \
    -device ivshmem-plain,memdev=shm >/dev/null 2>&1 || true
echo "x86 bed: TCG thread=$tcg, $smp vCPUs" >&2
grep -q "GRANULE-BED: END $scenario rc=0" "$log" || { echo "the bed run failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
