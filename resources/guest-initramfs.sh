#!/usr/bin/env bash
# Builds the guest payload granule boots in a bed: a tiny busybox initramfs with
# resources/guest/init and the bed's own kernel, in a cpio archive under /guest, to be
# concatenated after the bed's own initramfs (the kernel unpacks both).
#   amd64: the bzImage (vmlinuz), the same kernel as an ELF vmlinux (decompressed from
#          the bzImage's payload), and the pvpanic, NVMe and AHCI drivers plus barpoke
#          for the passthrough cases.
#   arm64: the Image and the same Image gzip-compressed (Image.gz). Debian's arm64
#          kernels build no pvpanic driver.
# Usage: resources/guest-initramfs.sh amd64|arm64 KERNEL BUSYBOX OUT_CPIO_GZ
set -euo pipefail
source "$(dirname "$0")/lib.sh"
arch=$1 kernel=$2 busybox=$3 out=$4
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The guest's own initramfs.
mkdir -p "$stage/initrd/bin" "$stage/initrd/dev" "$stage/initrd/proc" "$stage/initrd/sys" "$stage/payload/guest" \
    "$stage/initrd/lib/modules"
cp "$busybox" "$stage/initrd/bin/busybox"
# A module of the kernel beside KERNEL, decompressed into the guest's /lib/modules.
module() { # PATH-UNDER-kernel/ (without .ko.xz)
    local f
    f=$(echo "$(dirname "$kernel")"/lib/modules/*/kernel/"$1".ko.xz)
    [ -f "$f" ] || die "$f is missing: the guest needs $(basename "$1")"
    xz -dc "$f" > "$stage/initrd/lib/modules/$(basename "$1").ko"
}
if [ "$arch" = amd64 ]; then
    # The pvpanic driver, so a panic reaches granule through its pvpanic device.
    module drivers/misc/pvpanic/pvpanic
    module drivers/misc/pvpanic/pvpanic-mmio
    # NVMe (MSI-X) and AHCI with SCSI disks (MSI), for passed-through controllers.
    for m in nvme/common/nvme-auth nvme/host/nvme-core nvme/host/nvme scsi/scsi_common scsi/scsi_mod \
        scsi/sd_mod ata/libata ata/libahci ata/ahci; do
        module "drivers/$m"
    done
    # barpoke writes a passed-through BAR through its sysfs resource file.
    gcc -static -O2 -Wall -Werror -o "$stage/initrd/bin/barpoke" "$RESOURCES_DIR/guest/barpoke.c"
fi
cp "$RESOURCES_DIR/guest/init" "$stage/initrd/init"
(cd "$stage/initrd" && find . | cpio -o -H newc --quiet) | gzip -9 > "$stage/payload/guest/initrd.cpio.gz"

case $arch in
    amd64)
        cp "$kernel" "$stage/payload/guest/vmlinuz"
        "$RESOURCES_DIR/vmlinux-from-bzimage.sh" "$kernel" "$stage/payload/guest/vmlinux" ;;
    arm64)
        cp "$kernel" "$stage/payload/guest/Image"
        gzip -6 -c "$kernel" > "$stage/payload/guest/Image.gz" ;;
    *) die "unknown arch $arch" ;;
esac
(cd "$stage/payload" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
log "guest payload $(basename "$out"): $(du -h "$out" | cut -f1) ($(ls "$stage/payload/guest" | tr '\n' ' '))"
