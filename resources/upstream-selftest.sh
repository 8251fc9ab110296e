#!/usr/bin/env bash
# Builds the Linux KVM selftest mmu_stress_test, statically, from Debian's
# linux-source package (trixie-backports, fetched through a private apt configuration),
# so granule stress can be measured side by side with the original in a test bed.
# Prints the path of the binary. Not part of the test suite: ci/bench-stress-vs-upstream.sh
# uses it.
# Usage: resources/upstream-selftest.sh [x86_64|aarch64]    (default x86_64; aarch64 is
# cross-built with gcc-aarch64-linux-gnu)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
arch=${1:-x86_64}
case $arch in
    x86_64) karch=x86 cross= ;;
    aarch64) karch=arm64 cross=aarch64-linux-gnu- ;;
    *) echo "unknown arch $arch: use x86_64 or aarch64" >&2; exit 2 ;;
esac
pkg=linux-source-7.3
d=$GRANULE_CACHE/apt-src
mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/etc"
[ -f "$d/status" ] || : > "$d/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main" \
    > "$d/etc/sources.list"
opts=(-o Dir::Etc::SourceList="$d/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent
      -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" -o Dir::State::Status="$d/status"
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
if [ -z "$(find "$d/updated" -mtime -1 2>/dev/null)" ]; then
    apt-get "${opts[@]}" update -qq >/dev/null || die "apt-get update (trixie-backports) failed"
    touch "$d/updated"
fi
ver=$(apt-cache "${opts[@]}" policy "$pkg" | awk '/Candidate:/ {print $2}')
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "$pkg not found in trixie-backports"
out=$GRANULE_CACHE/upstream-selftest/$ver/$arch
bin=$out/mmu_stress_test
if [ ! -x "$bin" ]; then
    log "building mmu_stress_test for $arch from $pkg $ver"
    rm -rf "$out"; mkdir -p "$out/deb" "$out/src"
    (cd "$out/deb" && apt-get "${opts[@]}" download -qq "$pkg" >/dev/null) || die "download of $pkg failed"
    dpkg-deb -x "$out"/deb/*.deb "$out/pkg"
    tarball=$(ls "$out"/pkg/usr/src/linux-source-*.tar.*)
    top=$(basename "$tarball"); top=${top%%.tar.*}
    # The selftests need the tools tree, the UAPI headers and the build scripts.
    tar -xf "$tarball" -C "$out/src" "$top/tools" "$top/include" "$top/arch/$karch" "$top/scripts" \
        "$top/Makefile" "$top/Kbuild" "$top/Kconfig" "$top/usr" 2>/dev/null || true
    src=$out/src/$top
    # The VFIO helpers the kvm library builds symlink into drivers/: extract the targets.
    mapfile -t more < <(python3 - "$src" "$top" <<'PYEOF'
import os, sys
src, top = sys.argv[1], sys.argv[2]
dirs = set()
for base in ("tools/testing/selftests/vfio", "tools/testing/selftests/kvm"):
    for root, _, files in os.walk(os.path.join(src, base)):
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p):
                t = os.path.normpath(os.path.join(root, os.readlink(p)))
                dirs.add(os.path.join(top, os.path.relpath(os.path.dirname(t), src)))
print("\n".join(sorted(dirs)))
PYEOF
)
    [ ${#more[@]} -eq 0 ] || tar -xf "$tarball" -C "$out/src" "${more[@]}"
    make -s -C "$src" ARCH=$karch headers >/dev/null 2>"$out/headers.log" || die "make headers failed: $(tail -3 "$out/headers.log")"
    make -s -C "$src/tools/testing/selftests/kvm" ARCH=$karch CROSS_COMPILE=$cross LDFLAGS=-static \
        OUTPUT="$out/build" "$out/build/mmu_stress_test" >/dev/null 2>"$out/build.log" \
        || die "building mmu_stress_test failed: $(tail -5 "$out/build.log")"
    cp "$out/build/mmu_stress_test" "$bin"
    rm -rf "$out/deb" "$out/pkg" "$out/src"
fi
echo "$bin"
