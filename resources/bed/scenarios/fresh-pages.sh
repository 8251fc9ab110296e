# Shared by the benchmark scenarios (sourced, not a scenario: not executable).
# fresh_pages recycles the memory the last VM left before the next timed run. The bed's
# free 2 MiB blocks are handed out last-freed first, and allocating the ones a VM just
# freed was measured at up to 650 ms per block (README, "Kernel load"), most likely
# because under the bed's TCG the first write to a page a guest ran code from
# invalidates what TCG translated from it: a cost of the emulated bed that would
# otherwise land on whichever VMM runs next. A process faults in 1 GiB of THP and exits
# (granule's `hello` with a prefaulted zone is that process; any would do), untimed;
# its time is printed as a FRESH line.
# granule.fresh_pages=0 on the bed's command line turns it off.
fresh_pages_on=$(sed -n 's/.*granule\.fresh_pages=\([01]\).*/\1/p' /proc/cmdline)
fresh_pages_on=${fresh_pages_on:-1}
echo "GRANULE-BED: LINE fresh_pages $fresh_pages_on"

fresh_pages() {
    [ "$fresh_pages_on" = 1 ] || return 0
    fresh_a=$(awk '{printf "%d", $1 * 1000}' /proc/uptime)
    granule run hello -m size=1G,backing=thp,prefault=on --quiet > /dev/null 2>&1 \
        || echo "GRANULE-BED: DETAIL fresh_pages failed" >&2
    echo "GRANULE-BED: FRESH $(( $(awk '{printf "%d", $1 * 1000}' /proc/uptime) - fresh_a ))" >&2
}
