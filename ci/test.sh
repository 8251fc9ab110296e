#!/usr/bin/env bash
# granule's whole test suite: formatting, lints, unit tests, the integration tests that
# run real guests on this host's /dev/kvm, a fuzz smoke (ci/fuzz.sh), and the QEMU test beds (x86_64 nested SVM,
# arm64 VHE/nVHE, each with a vfio-pci device). README documents this command and
# .ci/run calls it, so a newcomer and CI run the same thing. It installs and prepares
# everything it needs (resources/bed-prepare.sh), cached under .cache/.
#
# Usage: ci/test.sh              everything (what CI runs)
#        ci/test.sh --host-only  skip the beds (fast iteration; bed tests print SKIP)
#
# Fails when anything fails, and when a test that must run did not: every KVM test
# when /dev/kvm exists, every bed test unless --host-only.
set -euo pipefail
cd "$(dirname "$0")/.."

beds=1
case "${1:-}" in
    --host-only) beds=0; export GRANULE_SKIP_BEDS=1 ;;
    "") ;;
    *) echo "usage: ci/test.sh [--host-only]" >&2; exit 2 ;;
esac

ci/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

if [ $beds = 1 ]; then
    echo "== preparing the test beds (cached)"
    resources/bed-prepare.sh
    export GRANULE_REQUIRE_BEDS=1
fi

ran_log=$(mktemp)
test_out=$(mktemp)
trap 'rm -f "$ran_log" "$test_out"' EXIT
export GRANULE_KVM_TESTS_LOG="$ran_log"
if [ -e /dev/kvm ]; then
    export GRANULE_REQUIRE_KVM=1
    echo "== /dev/kvm present: KVM integration tests are required"
else
    echo "== /dev/kvm absent: KVM integration tests will print SKIP"
fi

echo "== cargo test"
# --no-fail-fast: every test binary runs even after a failure, so the report is whole.
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$test_out"
test_rc=${PIPESTATUS[0]}
set -e

echo "== fuzz smoke (ci/fuzz.sh: every target for a few seconds)"
set +e
ci/fuzz.sh 3
fuzz_rc=$?
set -e

passed=$(grep -o '[0-9]* passed' "$test_out" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$test_out" | awk '{s+=$1} END {print s+0}')

# Names of the tests that must have run (calls may be wrapped over lines by rustfmt).
required() {
    local fn=$1; shift
    cat "$@" | tr -d '\n' | grep -o "$fn( *\"[^\"]*\"" | sed 's/.*"\(.*\)"/\1/' | sort -u
}
expected=$(mktemp)
{
    if [ -e /dev/kvm ]; then required common::kvm_available tests/host_kvm/*.rs; fi
    # Bed tests are named bed_*; some pass the name through a helper.
    if [ $beds = 1 ]; then grep -ho '"bed_[a-z0-9_]*"' tests/bed/tests/*.rs | tr -d '"' | sort -u; fi
} | sort -u > "$expected"
missing=$(comm -23 "$expected" <(sort -u "$ran_log"))
echo "== required tests run: $(sort -u "$ran_log" | wc -l) of $(wc -l < "$expected")"
rm -f "$expected"
if [ -n "$missing" ]; then
    echo "error: these required tests did not run:" >&2
    echo "$missing" >&2
    exit 1
fi
echo "total: $passed passed, $failed failed"
if [ "$test_rc" != 0 ]; then
    echo "error: cargo test failed (exit $test_rc); the failing tests are listed above" >&2
    exit 1
fi
if [ "$fuzz_rc" != 0 ]; then
    echo "error: the fuzz smoke failed (exit $fuzz_rc); see above and target/fuzz/" >&2
    exit 1
fi
