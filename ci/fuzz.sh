#!/usr/bin/env bash
# Runs granule's fuzz targets (fuzz/fuzz_targets/) with libFuzzer, each for SECONDS,
# and prints executions per target. A crash leaves its input under
# target/fuzz/artifacts/TARGET/ and makes the script fail.
#
# Usage: ci/fuzz.sh [SECONDS] [TARGET...]     (default 5 s each, every target)
#   ci/test.sh runs it briefly as a smoke test; run it for minutes by hand.
#   FUZZ_RUNS=N: stop each target after N executions instead (SECONDS still caps it).
#
# Stable Rust, no cargo-fuzz: libfuzzer-sys builds libFuzzer itself (with the C++
# compiler resources/packages.sh installs), and the coverage instrumentation is
# rustc's SanitizerCoverage pass, enabled with stable -C flags (the flags cargo-fuzz
# passes, minus -Zsanitizer=address, which needs nightly: memory errors in granule's
# few unsafe blocks are not caught, panics, overflows and failed asserts are).
# The committed seed corpus is fuzz/corpus/TARGET/; what a run finds goes to
# target/fuzz/corpus/TARGET/ and is reused by the next run on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-5}
shift || true
case "$secs" in ''|*[!0-9]*) echo "usage: ci/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <(ls fuzz/fuzz_targets | sed -n 's/\.rs$//p')
fi
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "error: no fuzz target '$t' (see fuzz/fuzz_targets/)" >&2; exit 2; }
done

host=$(rustc -vV | sed -n 's/^host: //p')
out=target/fuzz
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
echo "== building the fuzz targets ($host)"
# --target keeps the instrumentation off build scripts and proc macros.
cargo build --release --locked --manifest-path fuzz/Cargo.toml --target "$host" \
    --target-dir "$out/build" $(printf -- '--bin %s ' "${targets[@]}")

failed=0
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
runs=()
if [ -n "${FUZZ_RUNS:-}" ]; then runs=(-runs="$FUZZ_RUNS"); fi
printf '%-18s %8s %14s %10s %8s\n' target seconds executions exec/s corpus > "$summary"
for t in "${targets[@]}"; do
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t" fuzz/corpus/"$t"
    log="$out/$t.log"
    echo "== fuzzing $t for $secs s"
    set +e
    started=$(date +%s)
    "$out/build/$host/release/$t" -max_total_time="$secs" "${runs[@]}" -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$t/" -rss_limit_mb=2048 -timeout=10 \
        "$out/corpus/$t" "fuzz/corpus/$t" > "$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    units=$(ls "$out/corpus/$t" | wc -l)
    took=$(( $(date +%s) - started ))
    printf '%-18s %8s %14s %10s %8s\n' "$t" "$took" "${execs:-?}" "${rate:-?}" "$units" >> "$summary"
    if [ $rc != 0 ]; then
        failed=1
        echo "error: fuzz target $t failed (exit $rc); its input is in $out/artifacts/$t/:" >&2
        grep -A15 -m1 -E "panicked|ERROR: libFuzzer|deadly signal|timeout" "$log" >&2 || tail -20 "$log" >&2
    fi
done
cat "$summary"
exit $failed
