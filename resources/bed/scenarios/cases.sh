# Shared by the scenarios that run granule case by case (sourced, not a scenario:
# not executable). show NAME RC prints a case between the markers tests/bed parses
# (BedRun::case): its exit code, /tmp/NAME.out and .err, and /tmp/NAME.json if written.
# starting NAME says a case began (and the bed's uptime, the clock of its kernel's log
# lines), so a log that ends early says which one was running.
starting() { # name
    echo "GRANULE-BED: RUNNING $1 at=$(cut -d' ' -f1 /proc/uptime)s"
}
show() { # name rc
    echo "GRANULE-BED: CASE $1 rc=$2"
    for f in out err; do
        echo "GRANULE-BED: TEXT-BEGIN $1.$f"
        cat "/tmp/$1.$f"
        echo "GRANULE-BED: TEXT-END $1.$f"
    done
    if [ -s "/tmp/$1.json" ]; then
        echo "GRANULE-BED: JSON-BEGIN $1"
        cat "/tmp/$1.json"
        echo "GRANULE-BED: JSON-END $1"
    fi
}
