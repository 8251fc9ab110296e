#!/usr/bin/env bash
# granule's whole test suite: formatting, lints, unit tests and the integration tests
# that run real guests on this host's /dev/kvm. README documents this command and
# .ci/run calls it, so a newcomer and CI run the same thing.
#
# Usage: ci/test.sh
# Exits non-zero when anything fails, and when /dev/kvm exists but not every KVM
# integration test actually ran (a silent skip must not pass).
set -euo pipefail
cd "$(dirname "$0")/.."

ci/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

ran_log=$(mktemp)
trap 'rm -f "$ran_log"' EXIT
export GRANULE_KVM_TESTS_LOG="$ran_log"
if [ -e /dev/kvm ]; then
    export GRANULE_REQUIRE_KVM=1
    echo "== /dev/kvm present: KVM integration tests are required"
else
    echo "== /dev/kvm absent: KVM integration tests will print SKIP"
fi

echo "== cargo test"
test_out=$(mktemp)
trap 'rm -f "$ran_log" "$test_out"' EXIT
cargo test --workspace --locked 2>&1 | tee "$test_out"
passed=$(grep -o '[0-9]* passed' "$test_out" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$test_out" | awk '{s+=$1} END {print s+0}')

if [ -e /dev/kvm ]; then
    expected=$(grep -ho 'common::kvm_available("[^"]*")' tests/host_kvm/*.rs | sort -u | wc -l)
    ran=$(sort -u "$ran_log" | wc -l)
    echo "== KVM integration tests run: $ran of $expected"
    if [ "$ran" -lt "$expected" ]; then
        echo "error: /dev/kvm exists but only $ran of $expected KVM tests ran" >&2
        comm -13 <(sort -u "$ran_log") \
            <(grep -ho 'common::kvm_available("[^"]*")' tests/host_kvm/*.rs | sed 's/.*("\(.*\)")/\1/' | sort -u) >&2
        exit 1
    fi
fi
echo "total: $passed passed, $failed failed"
