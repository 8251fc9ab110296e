#!/usr/bin/env bash
# Unpacks Debian's rustc-web with the amd64 and arm64 standard libraries into a private
# directory (rustup's target download is not reachable on a fresh machine) and prints
# the env assignments that make cargo cross-build static aarch64 binaries with it.
# Usage: eval "$(resources/rust-arm64.sh)"; cargo build --target aarch64-unknown-linux-gnu
set -euo pipefail
source "$(dirname "$0")/lib.sh"
host_apt_update
arm64_apt_update
ver=$(apt-cache policy rustc-web | awk '/Candidate:/ {print $2}')
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "Debian has no rustc-web package"
short=$(echo "$ver" | sed -E 's/^([0-9]+\.[0-9]+).*/\1/')
dir=$GRANULE_CACHE/rust-arm64/$ver
if [ ! -f "$dir/.done" ]; then
    log "preparing Debian rustc-web $ver with the arm64 standard library"
    rm -rf "$dir"; mkdir -p "$dir/deb"
    llvm=$(apt-cache show "libstd-rust-web-$short=$ver" | sed -n 's/^Depends:.*\(libllvm[0-9][0-9]*\).*/\1/p' | head -1)
    for p in rustc-web "libstd-rust-web-$short" libstd-rust-web-dev ${llvm:-}; do
        download_deb "$dir/deb" "$p" amd64
    done
    for p in "libstd-rust-web-$short" libstd-rust-web-dev; do
        download_deb "$dir/deb" "$p" arm64
    done
    for d in "$dir"/deb/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
    rm -rf "$dir/deb"
    touch "$dir/.done"
fi
libs=$dir/root/usr/lib/x86_64-linux-gnu:$(echo "$dir"/root/usr/lib/llvm-*/lib | tr ' ' ':')
LD_LIBRARY_PATH=$libs "$dir/root/usr/bin/rustc" --version >/dev/null \
    || die "the unpacked rustc does not run (missing shared libraries?)"
cat <<ENV
export RUSTC='$dir/root/usr/bin/rustc'
export LD_LIBRARY_PATH='$libs'
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static'
ENV
