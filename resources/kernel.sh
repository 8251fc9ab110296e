#!/usr/bin/env bash
# Fetches and unpacks the newest Debian 6.12 kernel for ARCH (amd64 or arm64) and runs
# depmod on its modules. Prints the directory: $dir/vmlinuz and $dir/lib/modules/$ver.
# Usage: resources/kernel.sh amd64|arm64
set -euo pipefail
source "$(dirname "$0")/lib.sh"
arch=${1:?usage: kernel.sh amd64|arm64}
case $arch in amd64|arm64) ;; *) die "unknown arch '$arch' (amd64 or arm64)";; esac

if [ "$arch" = arm64 ]; then arm64_apt_update; else host_apt_update; fi
pkg=$(newest_kernel_package "$arch")
[ -n "$pkg" ] || die "no linux-image-6.12.*-$arch-unsigned package found"
ver=${pkg#linux-image-}; ver=${ver%-unsigned}
dir=$GRANULE_CACHE/kernel/$arch/$ver
if [ ! -f "$dir/.done" ]; then
    log "preparing kernel $ver ($arch)"
    rm -rf "$dir"; mkdir -p "$dir/deb"
    download_deb "$dir/deb" "$pkg" "$arch"
    dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
    cp "$dir/root/boot/vmlinuz-$ver" "$dir/vmlinuz"
    mkdir -p "$dir/lib/modules"
    mv "$dir/root/lib/modules/$ver" "$dir/lib/modules/$ver"
    depmod -b "$dir" "$ver"
    echo "$ver" > "$dir/version"
    rm -rf "$dir/root" "$dir/deb"
    touch "$dir/.done"
fi
echo "$dir"
