#!/usr/bin/env bash
# Packs a QEMU system emulator for a bed into a cpio archive, to be concatenated after
# the bed's initramfs (ci/bench-boot.sh runs QEMU inside a bed to compare boot times
# with granule):
#   amd64: the host's qemu-system-x86_64 with its shared libraries and the firmware a
#          `-kernel` boot needs;
#   arm64: Debian's arm64 qemu-system-aarch64 and the packages it depends on, fetched
#          with the private arm64 apt configuration and unpacked (cached per version).
# Usage: resources/qemu-payload.sh amd64|arm64 OUT_CPIO_GZ
set -euo pipefail
source "$(dirname "$0")/lib.sh"
arch=$1 out=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

amd64_payload() {
    local qemu=/usr/bin/qemu-system-x86_64 lib f
    [ -x "$qemu" ] || die "$qemu is missing; run resources/packages.sh"
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
}

arm64_payload() {
    local ver root debs
    arm64_apt_update
    # shellcheck disable=SC2046
    ver=$(apt-cache $(arm64_apt_opts) policy qemu-system-arm | awk '/Candidate:/ {print $2}')
    root=$GRANULE_CACHE/qemu-arm64/$ver
    if [ ! -x "$root/usr/bin/qemu-system-aarch64" ]; then
        rm -rf "$root"; debs=$(mktemp -d); mkdir -p "$root"
        log "fetching qemu-system-arm $ver (arm64) and its dependencies"
        # shellcheck disable=SC2046
        apt-get $(arm64_apt_opts) -o APT::Sandbox::User=root -o Dir::Cache::archives="$debs" \
            install --download-only -y -qq --no-install-recommends qemu-system-arm >/dev/null \
            || die "downloading qemu-system-arm (arm64) failed"
        for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root"; done
        rm -rf "$debs"
    fi
    mkdir -p "$stage/usr/bin"
    cp "$root/usr/bin/qemu-system-aarch64" "$stage/usr/bin/"
    # The loader and the libraries, where the arm64 binaries look for them.
    for d in lib usr/lib; do
        [ -d "$root/$d" ] && mkdir -p "$stage/$d" && cp -a "$root/$d/." "$stage/$d/"
    done
    rm -rf "$stage/usr/lib/python3" "$stage/usr/lib/systemd" "$stage/usr/lib/udev"
}

case $arch in
    amd64) amd64_payload ;;
    arm64) arm64_payload ;;
    *) die "unknown arch $arch" ;;
esac
(cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
log "QEMU payload $(basename "$out"): $(du -h "$out" | cut -f1)"
