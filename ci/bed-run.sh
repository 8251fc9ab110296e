#!/usr/bin/env bash
# Runs one scenario in a test bed for a benchmark script and checks that it ended with
# rc=0: the same QEMU machine the bed tests use (tests/bed; the ivshmem device bound to
# vfio-pci included), booting INITRD. The serial log is
# target/bed-logs/ARCH-SCENARIO.log.
#   x86_64: q35 with intel-iommu under TCG; GRANULE_BED_TCG=single (default; stress and
#           selftests) or multi (multi-vCPU Linux boots); see README, "How the test
#           beds run".
#   aarch64: virt with virtualization=on, GICv3 and an SMMUv3, multi-threaded TCG.
# GRANULE_BED_SMP is the bed's vCPUs (default 2).
# Usage: [GRANULE_BED_TCG=single|multi] [GRANULE_BED_SMP=N] ci/bed-run.sh x86_64|aarch64 INITRD SCENARIO TIMEOUT_SECS MEMORY [KERNEL-ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$1 initrd=$2 scenario=$3 secs=$4 mem=$5; shift 5
source .cache/bed/manifest.env
smp=${GRANULE_BED_SMP:-2}
case $arch in
    x86_64)
        tcg=${GRANULE_BED_TCG:-single}
        case $tcg in single|multi) ;; *) echo "GRANULE_BED_TCG=$tcg: use single or multi" >&2; exit 2 ;; esac
        qemu=(qemu-system-x86_64 -M q35 -cpu max -device intel-iommu,intremap=on)
        # A periodic tick: see tests/bed/src/qemu.rs.
        kernel=$X86_64_KERNEL console="console=ttyS0 intel_iommu=on highres=off nohz=off" ;;
    aarch64)
        tcg=${GRANULE_BED_TCG:-multi}
        qemu=(qemu-system-aarch64 -M virt,virtualization=on,gic-version=3,iommu=smmuv3 -cpu max)
        kernel=$AARCH64_KERNEL console="console=ttyAMA0" ;;
    *) echo "unknown arch $arch: use x86_64 or aarch64" >&2; exit 2 ;;
esac
log=target/bed-logs/$arch-$scenario.log
mkdir -p target/bed-logs; rm -f "$log"
timeout "$secs" "${qemu[@]}" -accel tcg,thread=$tcg,tb-size=512 -m "$mem" -smp "$smp" \
    -display none -monitor none -no-reboot -serial "file:$log" -kernel "$kernel" -initrd "$initrd" \
    -append "$console panic=-1 loglevel=4 granule.scenario=$scenario $*" \
    -object memory-backend-memfd,id=shm,size=1G,share=on \
    -device ivshmem-plain,memdev=shm >/dev/null 2>&1 || true
echo "$arch bed: TCG thread=$tcg, $smp vCPUs" >&2
grep -q "GRANULE-BED: END $scenario rc=0" "$log" || { echo "the bed run failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
