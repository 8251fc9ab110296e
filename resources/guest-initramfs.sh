#!/usr/bin/env bash
# Builds the guest payload granule boots in the x86 bed: a tiny busybox initramfs with
# resources/guest/init, the bed's bzImage, and the same kernel as an ELF vmlinux
# (decompressed from the bzImage's payload). All three go into a cpio archive under
# /guest, to be concatenated after the bed's own initramfs (the kernel unpacks both).
# Usage: resources/guest-initramfs.sh BZIMAGE OUT_CPIO_GZ
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bz=$1 out=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The guest's own initramfs.
mkdir -p "$stage/initrd/bin" "$stage/initrd/dev" "$stage/initrd/proc" "$stage/initrd/sys" "$stage/payload/guest"
cp /bin/busybox "$stage/initrd/bin/busybox"
cp "$RESOURCES_DIR/guest/init" "$stage/initrd/init"
(cd "$stage/initrd" && find . | cpio -o -H newc --quiet) | gzip -9 > "$stage/payload/guest/initrd.cpio.gz"

cp "$bz" "$stage/payload/guest/vmlinuz"
"$RESOURCES_DIR/vmlinux-from-bzimage.sh" "$bz" "$stage/payload/guest/vmlinux"
(cd "$stage/payload" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
log "guest payload $(basename "$out"): $(du -h "$out" | cut -f1) (bzImage, ELF vmlinux, initrd)"
