#!/usr/bin/env bash
# Installs the host packages the test beds, the arm64 build and the fuzz targets (g++
# builds libFuzzer) need (Debian's apt), only those missing. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

want=(qemu-system-x86 qemu-system-arm qemu-user-static busybox-static kmod cpio xz-utils zstd
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross python3 gcc libc6-dev device-tree-compiler
      g++)
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    host_apt_update
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
