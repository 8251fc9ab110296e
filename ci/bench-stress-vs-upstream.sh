#!/usr/bin/env bash
# Benchmark: granule stress against the Linux selftest mmu_stress_test it ports, in a
# test bed (x86: nested SVM+NPT; arm64: KVM at EL2 in TCG's virt, VHE), same
# configuration (-c 2 -m 1 -s 1, skip on fault), alternated, ROUNDS times each. The
# selftest is built from Debian's kernel source for the bed's arch. Prints each phase's
# median for both and the ratio granule/upstream. A measurement, not a test.
# Extra arguments make each round also run granule stress with them (e.g. --guest-page
# 4K on arm64), reported as granule_alt. STRESS_BOTH_ARGS (e.g. -H) go to both tools;
# with -H the bed reserves 600 2 MiB hugetlb pages. STRESS_PROFILE (kernel function
# names, space-separated) has ftrace's function graph tracer record those functions'
# calls in the bed over each tool's run; calls and the mean time per call are printed
# per tool, and each run's calls with its two longest (the tracer's own cost is in the
# times).
# Usage: ci/bench-stress-vs-upstream.sh [ROUNDS] [x86_64|aarch64] [GRANULE-STRESS-ARGS...]
#        (defaults 3, x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} arch=${2:-x86_64}; shift $(($# < 2 ? $# : 2))
case $arch in
    x86_64|aarch64) ;;
    *) echo "unknown arch $arch: use x86_64 or aarch64" >&2; exit 2 ;;
esac
resources/bed-prepare.sh >/dev/null
upstream=$(resources/upstream-selftest.sh "$arch")
source .cache/bed/manifest.env
base=X86_64_INITRD; [ "$arch" = aarch64 ] && base=AARCH64_INITRD
# The bed's initramfs followed by one holding the selftest (the kernel unpacks both).
img=.cache/bed/$arch-stress-vs-upstream.cpio.gz
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tests"; cp "$upstream" "$stage/tests/mmu_stress_test"
(cd "$stage" && find tests | cpio -o -H newc --quiet | gzip -1) | cat "${!base}" - > "$img"
# A round takes up to 15 minutes in the arm64 bed (20 with the extra variant).
per=$(( $# > 0 ? 1500 : 900 ))
both=${STRESS_BOTH_ARGS:-}
pool=""; case " $both " in *" -H "*) pool="hugepagesz=2M hugepages=600" ;; esac
ci/bed-run.sh "$arch" "$img" stress-vs-upstream $((rounds * per + 120)) 4G $pool \
    "granule.rounds=$rounds" ${both:+"granule.both_args=${both// /,}"} ${*:+"granule.stress_args=$(IFS=,; echo "$*")"} \
    ${STRESS_PROFILE:+"granule.profile=${STRESS_PROFILE// /,}"}
log=target/bed-logs/$arch-stress-vs-upstream.log
python3 - "$log" <<'PY'
import re, statistics, sys
runs = {"granule": [], "granule_alt": [], "upstream": []}
kvm = {k: [] for k in runs}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"GRANULE-BED: LINE (\w+) (run1 = .*)", line.strip())
    if m:
        runs[m.group(1)].append({k: float(v) for k, v in re.findall(r"(\w+) = ([0-9.]+)s", m.group(2))})
    m = re.match(r"GRANULE-BED: KVMSTATS (\w+)(.*)", line.strip())
    if m:
        kvm[m.group(1)].append({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))})
tools = [t for t in runs if runs[t]]
if "upstream" not in tools or "granule" not in tools:
    sys.exit("no complete round to compare")
print(f"{len(runs['upstream'])} rounds, medians, seconds; ratio = tool/upstream")
print(f"{'phase':<6}" + "".join(f" {t:>12} {'ratio':>6}" for t in tools if t != "upstream") + f" {'upstream':>12}")
for p in ["run1", "reset", "run2", "ro", "rw"]:
    u = statistics.median(r[p] for r in runs["upstream"])
    row = f"{p:<6}"
    for t in tools:
        if t != "upstream":
            g = statistics.median(r[p] for r in runs[t])
            row += f" {g:12.6f} {g / u if u else float('nan'):6.2f}"
    print(row + f" {u:12.6f}")
prof, each = {}, []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"GRANULE-BED: PROFILE (\w+) \d+ (\S+) (\d+) ([0-9.]+) ?([0-9.]*) ?([0-9.]*)", line.strip())
    if m:
        acc = prof.setdefault((m.group(1), m.group(2)), [0, 0.0])
        acc[0] += int(m.group(3)); acc[1] += float(m.group(4))
        each.append(m.groups())
if prof:
    print("ftrace function graph, all rounds and CPUs: calls, and us per call (callees and sleep included)")
    for f in sorted({f for _, f in prof}):
        print(f"  {f:<34}" + "".join(
            f" {t} {prof[(t, f)][0]:>9} {prof[(t, f)][1] / max(prof[(t, f)][0], 1):9.2f}"
            if (t, f) in prof else f" {t} {'-':>9} {'-':>9}" for t in tools))
    print("per run, in order: calls, the longest and the second longest call (us)")
    for tool, f, calls, _, top1, top2 in each:
        print(f"  {tool:<12} {f:<34} {calls:>9} {top1 or '-':>12} {top2 or '-':>12}")
if all(kvm[t] for t in tools):
    print("KVM debugfs totals over a whole run (sampled every 0.5 s; medians):")
    for k in kvm["upstream"][0]:
        print(f"  {k:<18}" + "".join(f" {t} {statistics.median(r.get(k, 0) for r in kvm[t]):>11.0f}" for t in tools))
PY
