#!/usr/bin/env bash
# Builds a test-bed initramfs: busybox, the KVM/VFIO modules (decompressed, in load
# order), granule's static binary, optional test binaries, /init and the scenarios.
# Usage: resources/initramfs.sh amd64|arm64 KERNEL_DIR BUSYBOX GRANULE_BIN OUT [TEST_BIN...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
arch=$1 kdir=$2 busybox=$3 granule=$4 out=$5; shift 5
ver=$(cat "$kdir/version")
mdir=$kdir/lib/modules/$ver

# Modules and their parameters; dependencies come from modules.dep.
case $arch in
    amd64) wanted=("kvm_amd npt=1 nested=1" "vfio" "vfio_iommu_type1" "vfio_pci") ;;
    arm64) wanted=("vfio" "vfio_iommu_type1" "vfio_pci") ;;
    *) die "unknown arch $arch" ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,etc/granule,lib/modules,scenarios,tests}
cp "$busybox" "$stage/bin/busybox"
cp "$granule" "$stage/bin/granule"
for t in "$@"; do cp "$t" "$stage/tests/"; done
cp "$RESOURCES_DIR/bed/init" "$stage/init"
# dropcap runs granule without CAP_IPC_LOCK under a small RLIMIT_MEMLOCK (x86 bed).
if [ "$arch" = amd64 ]; then
    gcc -static -O2 -Wall -Werror -o "$stage/bin/dropcap" "$RESOURCES_DIR/bed/tools/dropcap.c"
fi
cp "$RESOURCES_DIR"/bed/scenarios/* "$stage/scenarios/"

# Path of a module by name (dashes and underscores are the same to the kernel).
mod_path() {
    local re=${1//_/[-_]}
    grep -oE "^[^:]*/$re\.ko(\.xz|\.zst)?:" "$mdir/modules.dep" | head -1 | tr -d :
}
: > "$stage/etc/granule/modules"
declare -A seen=()
for entry in "${wanted[@]}"; do
    name=${entry%% *}; params=""; [ "$entry" != "$name" ] && params=${entry#* }
    path=$(mod_path "$name") || true
    [ -n "$path" ] || die "module $name not found in $mdir/modules.dep"
    # modules.dep lists dependencies so that the last one loads first.
    deps=$(grep -E "^$path:" "$mdir/modules.dep" | cut -d: -f2)
    for p in $(echo "$deps" | tr ' ' '\n' | tac) "$path"; do
        [ -n "$p" ] && [ -z "${seen[$p]:-}" ] || continue
        seen[$p]=1
        base=$(basename "$p"); base=${base%.xz}; base=${base%.zst}
        case $p in
            *.xz) xz -dc "$mdir/$p" > "$stage/lib/modules/$base" ;;
            *.zst) zstd -qdc "$mdir/$p" > "$stage/lib/modules/$base" ;;
            *) cp "$mdir/$p" "$stage/lib/modules/$base" ;;
        esac
        if [ "$p" = "$path" ]; then echo "$base $params"; else echo "$base"; fi >> "$stage/etc/granule/modules"
    done
done
(cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
log "initramfs $(basename "$out"): $(du -h "$out" | cut -f1), modules: $(awk '{print $1}' "$stage/etc/granule/modules" | tr '\n' ' ')"
