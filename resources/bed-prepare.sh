#!/usr/bin/env bash
# Prepares everything the QEMU test beds need, idempotently, from Debian packages and
# this repository: host packages, both kernels, busybox for arm64, Debian's Rust for
# the arm64 build, static granule binaries (and arm64 test binaries), and an initramfs
# per architecture. Writes $GRANULE_CACHE/bed/manifest.env for the bed runner.
# Usage: resources/bed-prepare.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
out=$GRANULE_CACHE/bed
mkdir -p "$out"

"$RESOURCES_DIR/packages.sh"
kx86=$("$RESOURCES_DIR/kernel.sh" amd64)
karm=$("$RESOURCES_DIR/kernel.sh" arm64)

# busybox for arm64 from busybox-static:arm64 (the host's busybox-static is amd64).
arm64_apt_update
bbver=$(apt-cache $(arm64_apt_opts) policy busybox-static | awk '/Candidate:/ {print $2}')
bbarm=$GRANULE_CACHE/busybox-arm64/$bbver/busybox
if [ ! -x "$bbarm" ]; then
    d=$(dirname "$bbarm"); rm -rf "$d"; mkdir -p "$d/deb"
    download_deb "$d/deb" busybox-static arm64
    dpkg-deb -x "$d"/deb/*.deb "$d/root"
    cp "$d/root/bin/busybox" "$bbarm"; rm -rf "$d/deb" "$d/root"
fi

log "building static granule for x86_64"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build -q --locked --release --target x86_64-unknown-linux-gnu -p granule-vmm --bin granule
gx86=$REPO_DIR/target/x86_64-unknown-linux-gnu/release/granule

log "building static granule and its tests for aarch64 (Debian rustc-web)"
eval "$("$RESOURCES_DIR/rust-arm64.sh")"
armdir=$REPO_DIR/target/debian-rustc
cargo build -q --locked --release --target aarch64-unknown-linux-gnu --target-dir "$armdir" -p granule-vmm --bin granule
garm=$armdir/aarch64-unknown-linux-gnu/release/granule
mapfile -t armtests < <(cargo test -q --locked --release --no-run --target aarch64-unknown-linux-gnu \
    --target-dir "$armdir" --workspace --exclude granule-bed --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])')
[ ${#armtests[@]} -gt 0 ] || die "no aarch64 test binaries were built"
unset RUSTC LD_LIBRARY_PATH

"$RESOURCES_DIR/initramfs.sh" amd64 "$kx86" /bin/busybox "$gx86" "$out/x86_64.cpio.gz"
"$RESOURCES_DIR/initramfs.sh" arm64 "$karm" "$bbarm" "$garm" "$out/aarch64.cpio.gz" "${armtests[@]}"

# The Linux-boot beds: each bed's initramfs followed by the guest payload granule
# boots (the kernel unpacks concatenated archives in order).
"$RESOURCES_DIR/guest-initramfs.sh" amd64 "$kx86/vmlinuz" /bin/busybox "$out/x86_64-guest.cpio.gz"
cat "$out/x86_64.cpio.gz" "$out/x86_64-guest.cpio.gz" > "$out/x86_64-boot.cpio.gz"
"$RESOURCES_DIR/guest-initramfs.sh" arm64 "$karm/vmlinuz" "$bbarm" "$out/aarch64-guest.cpio.gz"
cat "$out/aarch64.cpio.gz" "$out/aarch64-guest.cpio.gz" > "$out/aarch64-boot.cpio.gz"

cat > "$out/manifest.env" <<ENV
X86_64_KERNEL=$kx86/vmlinuz
X86_64_INITRD=$out/x86_64.cpio.gz
X86_64_BOOT_INITRD=$out/x86_64-boot.cpio.gz
AARCH64_KERNEL=$karm/vmlinuz
AARCH64_INITRD=$out/aarch64.cpio.gz
AARCH64_BOOT_INITRD=$out/aarch64-boot.cpio.gz
ENV
log "beds ready: $out/manifest.env"
