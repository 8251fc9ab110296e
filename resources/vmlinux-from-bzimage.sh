#!/usr/bin/env bash
# Extracts the ELF vmlinux from a bzImage: the setup header's payload_offset and
# payload_length locate the compressed kernel, whose magic says how to decompress it.
# Usage: resources/vmlinux-from-bzimage.sh BZIMAGE OUT
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bz=$1 out=$2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
python3 - "$bz" "$tmp" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
if b[0x202:0x206] != b"HdrS":
    sys.exit("not a bzImage")
off, length = struct.unpack_from("<II", b, 0x248)
start = ((b[0x1f1] or 4) + 1) * 512 + off
open(sys.argv[2], "wb").write(b[start:start + length])
PY
case $(od -An -tx1 -N4 "$tmp" | tr -d ' ') in
    28b52ffd) zstd -qdc "$tmp" > "$out" 2>/dev/null || true ;;
    fd377a58) xz -qdc "$tmp" > "$out" 2>/dev/null || true ;;
    1f8b*) gzip -qdc "$tmp" > "$out" 2>/dev/null || true ;;
    *) die "unknown payload compression in $bz" ;;
esac
# The payload carries trailing bytes (its size) the decompressors may complain about;
# what matters is a complete ELF.
[ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = "177ELF" ] || die "no ELF came out of $bz"
