#!/usr/bin/env bash
# Installs what granule's build and tests need, idempotently: the Rust toolchain with
# rustfmt and clippy (which this kind of machine ships) and the host packages the beds
# and tests use (resources/packages.sh).
set -euo pipefail

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "error: $1 is not installed; $2" >&2
        exit 1
    fi
}
need cargo "install Rust 1.88 or newer (rustup or Debian's rustc/cargo)"
cargo fmt --version >/dev/null 2>&1 || { echo "error: rustfmt missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "error: clippy missing: rustup component add clippy" >&2; exit 1; }
cargo fetch --locked >/dev/null
# Host packages (Debian's apt), only those missing: the beds' QEMU and cross tools, and
# dtc, which the arm64 device-tree test decompiles with.
resources/packages.sh
