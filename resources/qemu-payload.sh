#!/usr/bin/env bash
# Packs the host's qemu-system-x86_64 with its shared libraries and the firmware a
# `-kernel` boot needs into a cpio archive, to be concatenated after a bed initramfs
# (ci/bench-boot.sh runs QEMU inside the x86 bed to compare boot times with granule).
# Usage: resources/qemu-payload.sh OUT_CPIO_GZ
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
qemu=/usr/bin/qemu-system-x86_64
[ -x "$qemu" ] || die "$qemu is missing; run resources/packages.sh"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/usr/bin" "$stage/usr/share/qemu"
cp "$qemu" "$stage/usr/bin/"
# Libraries at their own paths, so the dynamic loader finds them as on the host.
for lib in $(ldd "$qemu" | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}'); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
done
for f in bios-256k.bin linuxboot_dma.bin kvmvapic.bin; do
    cp -L "/usr/share/qemu/$f" "$stage/usr/share/qemu/$f" 2>/dev/null \
        || cp -L "/usr/share/seabios/$f" "$stage/usr/share/qemu/$f"
done
(cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
log "QEMU payload $(basename "$out"): $(du -h "$out" | cut -f1)"
