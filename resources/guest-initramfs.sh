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
mkdir -p "$stage/initrd/bin" "$stage/initrd/dev" "$stage/initrd/proc" "$stage/initrd/sys" "$stage/payload/guest" \
    "$stage/initrd/lib/modules"
cp /bin/busybox "$stage/initrd/bin/busybox"
# The pvpanic driver (a module in Debian's kernel), so a panic reaches granule through
# its pvpanic device; init loads it. The kernel's modules sit beside the bzImage.
mdir=$(echo "$(dirname "$bz")"/lib/modules/*/kernel/drivers/misc/pvpanic)
for m in pvpanic pvpanic-mmio; do
    [ -f "$mdir/$m.ko.xz" ] || die "$mdir/$m.ko.xz is missing: the guest needs the pvpanic driver"
    xz -dc "$mdir/$m.ko.xz" > "$stage/initrd/lib/modules/$m.ko"
done
# The NVMe driver, for a passed-through NVMe controller (guest.action=passthrough).
ndir=$(echo "$(dirname "$bz")"/lib/modules/*/kernel/drivers/nvme)
for m in common/nvme-auth host/nvme-core host/nvme; do
    [ -f "$ndir/$m.ko.xz" ] || die "$ndir/$m.ko.xz is missing: the guest needs the NVMe driver"
    xz -dc "$ndir/$m.ko.xz" > "$stage/initrd/lib/modules/$(basename "$m").ko"
done
# The AHCI driver and SCSI disks, for a passed-through SATA controller (MSI).
adir=$(echo "$(dirname "$bz")"/lib/modules/*/kernel/drivers)
for m in scsi/scsi_common scsi/scsi_mod scsi/sd_mod ata/libata ata/libahci ata/ahci; do
    [ -f "$adir/$m.ko.xz" ] || die "$adir/$m.ko.xz is missing: the guest needs the AHCI driver"
    xz -dc "$adir/$m.ko.xz" > "$stage/initrd/lib/modules/$(basename "$m").ko"
done
cp "$RESOURCES_DIR/guest/init" "$stage/initrd/init"
# barpoke writes a passed-through BAR through its sysfs resource file.
gcc -static -O2 -Wall -Werror -o "$stage/initrd/bin/barpoke" "$RESOURCES_DIR/guest/barpoke.c"
(cd "$stage/initrd" && find . | cpio -o -H newc --quiet) | gzip -9 > "$stage/payload/guest/initrd.cpio.gz"

cp "$bz" "$stage/payload/guest/vmlinuz"
"$RESOURCES_DIR/vmlinux-from-bzimage.sh" "$bz" "$stage/payload/guest/vmlinux"
(cd "$stage/payload" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
log "guest payload $(basename "$out"): $(du -h "$out" | cut -f1) (bzImage, ELF vmlinux, initrd)"
