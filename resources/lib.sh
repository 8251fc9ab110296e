# Shared by the resources/ scripts: where prepared artefacts live and small helpers.
# Everything prepared goes under $GRANULE_CACHE (default: .cache/ at the repo root,
# ignored by git), keyed by the version it was made from, so re-runs skip work.

RESOURCES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$RESOURCES_DIR/.." && pwd)
GRANULE_CACHE=${GRANULE_CACHE:-$REPO_DIR/.cache}
mkdir -p "$GRANULE_CACHE"

log() { echo "[resources] $*" >&2; }
die() { echo "[resources] error: $*" >&2; exit 1; }

# apt options for a private arm64 package world: its own lists, cache and dpkg status
# under the cache, the host's sources read-only. The host's apt state is never touched.
arm64_apt_opts() {
    local d=$GRANULE_CACHE/apt-arm64
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    [ -f "$d/status" ] || : > "$d/status"
    echo -o APT::Architecture=arm64 -o APT::Architectures=arm64 \
        -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" \
        -o Dir::State::Status="$d/status" -o Debug::NoLocking=1
}

# Refreshes the private arm64 package lists at most once a day.
arm64_apt_update() {
    local stamp=$GRANULE_CACHE/apt-arm64/updated
    if [ -z "$(find "$stamp" -mtime -1 2>/dev/null)" ]; then
        log "updating the private arm64 package lists"
        # shellcheck disable=SC2046
        apt-get $(arm64_apt_opts) update -qq >/dev/null || die "apt-get update (arm64 lists) failed"
        touch "$stamp"
    fi
}

# Host apt lists: refreshed once a day (apt stamps list files with the server's
# mtime, so our own stamp tells when we last updated).
host_apt_update() {
    local stamp=$GRANULE_CACHE/apt-host-updated
    if [ -z "$(find "$stamp" -mtime -1 2>/dev/null)" ]; then
        log "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        touch "$stamp"
    fi
}

# The newest linux-image-6.12.*-ARCH-unsigned package name apt knows (arm64 through the
# private config). The security suite keeps only recent builds, so never pin one.
newest_kernel_package() {
    local arch=$1 opts=""
    [ "$arch" = arm64 ] && opts=$(arm64_apt_opts)
    # shellcheck disable=SC2086
    apt-cache $opts search --names-only "^linux-image-6\.12\.[0-9]+\+deb12-$arch-unsigned\$" \
        | awk '{print $1}' | sort -V | tail -1
}

# Downloads package $2 (apt-get download) into directory $1, arm64 if $3 = arm64.
download_deb() {
    local dir=$1 pkg=$2 arch=${3:-amd64} opts=""
    [ "$arch" = arm64 ] && opts=$(arm64_apt_opts)
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    (cd "$dir" && apt-get $opts -o APT::Sandbox::User=root download -qq "$pkg" >/dev/null) || die "apt-get download $pkg ($arch) failed"
}
