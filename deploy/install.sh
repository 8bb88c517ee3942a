#!/usr/bin/env bash
# Installs what `make run` and `make test` need, skipping every step already done:
#   1. Debian packages: PostgreSQL 15 with tdigest, TimescaleDB's build packages (and a JRE
#      and Maven when missing), without letting Debian create and start a `main` cluster;
#   2. TimescaleDB 2.28.3, built once per machine from the vendored upstream tarball
#      ($TURNSTILE_TIMESCALEDB_TARBALL, default ../shared/vendor/ beside the clone), unless
#      `pg_config --pkglibdir` already holds it (built before, or Timescale's own
#      timescaledb-2-postgresql-15 package);
#   3. the Python venv (.venv, python3 -m venv + uv) with the project and its dev extras,
#      keyed to the hash of pyproject.toml;
#   4. the Kafka broker's jars from Maven Central (deploy/kafka/lib), keyed to pom.xml.
# A repeat run costs well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

VENV=.venv
# hll: mergeable unique counts (unique IPs / consumers) in the real-time store
PG_PACKAGES=(postgresql-15 postgresql-15-tdigest postgresql-15-hll)
# What building TimescaleDB needs; postgresql-server-dev-15 pins the server's own version.
BUILD_PACKAGES=(postgresql-server-dev-15 cmake gcc make libssl-dev)
TIMESCALEDB_VERSION=2.28.3
TIMESCALEDB_TARBALL=${TURNSTILE_TIMESCALEDB_TARBALL:-../shared/vendor/timescaledb-$TIMESCALEDB_VERSION.tar.gz}
TIMESCALEDB_DIR=deploy/timescaledb

log() { printf '[install] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

running_postgres() {
    # Every postmaster started from Debian's binaries (ours: the stack's, the tests'); a
    # package upgrade replaces the libraries under them (plpgsql.so then fails to load).
    pgrep -a -f '^/usr/lib/postgresql/[0-9]+/bin/postgres( |$)' 2>/dev/null || true
}

refuse_under_running_server() {
    local servers
    servers=$(running_postgres)
    [ -z "$servers" ] && return
    if [ "${TURNSTILE_INSTALL_UNDER_RUNNING_PG:-0}" = 1 ]; then
        log "WARNING: installing PostgreSQL packages under running servers; restart them"
        log "         now (turnstile stack down && turnstile stack up):"
        printf '%s\n' "$servers" | sed 's/^/[install]     /'
        return
    fi
    log "refusing to install PostgreSQL packages ($*) while PostgreSQL runs:"
    printf '%s\n' "$servers" | sed 's/^/[install]     /'
    log "apt-get may upgrade postgresql-15 in place and break those servers. Stop them"
    log "(turnstile stack down; let test sessions finish) and run deploy/install.sh again,"
    log "or set TURNSTILE_INSTALL_UNDER_RUNNING_PG=1 and restart them afterwards."
    exit 1
}

system_packages() {
    local missing=()
    for pkg in "${PG_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    if ! timescaledb_installed; then
        for pkg in "${BUILD_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    fi
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    # the dashboard's browser test drives Debian's chromium (never a downloaded browser)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    # the Redis-counters baseline of benchmarks.pipeline starts its own redis-server
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ "${#missing[@]}" -eq 0 ] && return
    # Our clusters live in the state folder; a Debian `main` cluster on 5432 would only
    # get in the way (and start at boot), so tell postgresql-common not to create one.
    local conf=/etc/postgresql-common/createcluster.conf
    if ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf" 2>/dev/null; then
        log "disabling Debian's main cluster in $conf"
        as_root mkdir -p "$(dirname "$conf")"
        echo 'create_main_cluster = false' | as_root tee -a "$conf" >/dev/null
    fi
    local server_packages=()
    for pkg in "${missing[@]}"; do
        case "$pkg" in postgresql-*) server_packages+=("$pkg") ;; esac
    done
    [ "${#server_packages[@]}" -gt 0 ] && refuse_under_running_server "${server_packages[*]}"
    log "apt-get install ${missing[*]}"
    as_root apt-get update -q
    # Packages like redis-server start a system service on install; ours start their own
    # servers on 127.0.0.1 and stop them, so no init script may start one (policy-rc.d 101).
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"; own_policy=1
    fi
    local status=0
    as_root env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get install -y -q \
        --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}" || status=$?
    # removed even when apt-get failed, so a failed install never silences the machine's services
    [ "$own_policy" -eq 1 ] && as_root rm -f "$policy"
    return "$status"
}

pg_libdir() {
    if command -v pg_config >/dev/null; then pg_config --pkglibdir
    else echo /usr/lib/postgresql/15/lib; fi
}

timescaledb_installed() {
    [ -f "$(pg_libdir)/timescaledb-$TIMESCALEDB_VERSION.so" ]
}

timescaledb() {
    timescaledb_installed && return
    local tarball=$TIMESCALEDB_TARBALL
    if [ ! -f "$tarball" ]; then
        log "TimescaleDB $TIMESCALEDB_VERSION is not installed and $tarball is missing:"
        log "set TURNSTILE_TIMESCALEDB_TARBALL to the upstream source tarball (git archive"
        log "of tag $TIMESCALEDB_VERSION, see README), or install timescaledb-2-postgresql-15"
        exit 1
    fi
    log "checking $tarball against $TIMESCALEDB_DIR/timescaledb-$TIMESCALEDB_VERSION.tar.gz.sha256"
    local expected actual
    expected=$(cut -d' ' -f1 "$TIMESCALEDB_DIR/timescaledb-$TIMESCALEDB_VERSION.tar.gz.sha256")
    actual=$(sha256sum "$tarball" | cut -d' ' -f1)
    if [ "$expected" != "$actual" ]; then
        log "checksum mismatch for $tarball: expected $expected, got $actual"
        exit 1
    fi
    local work
    work=$(mktemp -d /tmp/turnstile-timescaledb.XXXXXX)
    local src="$work/timescaledb-$TIMESCALEDB_VERSION" buildlog="$work/build.log"
    log "building TimescaleDB $TIMESCALEDB_VERSION in $work (about 2 minutes on 2 cores; log: $buildlog)"
    mkdir -p "$src"
    tar xzf "$tarball" -C "$src" --strip-components=1
    local patch
    for patch in "$TIMESCALEDB_DIR"/*.patch; do
        log "applying $(basename "$patch")"
        (cd "$src" && git apply -p1 "$REPO/$patch")
    done
    # No regression/TAP suites, telemetry off by default, no downgrade script (needs git).
    if ! cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF -DSEND_TELEMETRY_DEFAULT=NO \
        -DGENERATE_DOWNGRADE_SCRIPT=OFF >"$buildlog" 2>&1; then
        tail -n 30 "$buildlog"; log "cmake failed (log: $buildlog)"; exit 1
    fi
    # Progress: cmake's "[ NN%]" lines, one line per tenth; the rest goes to the log.
    # ("fatal: not a git repository" in the log is the build asking git for a commit hash.)
    if ! make -C "$src/build" -j"$(nproc)" 2>&1 | tee -a "$buildlog" \
        | awk 'match($0, /^\[ *[0-9]+%\]/) { p = int(substr($0, 2, 3) / 10) * 10;
               if (p > last) { printf "[install]   build %d%%\n", p; fflush(); last = p } }'; then
        tail -n 30 "$buildlog"; log "build failed (log: $buildlog)"; exit 1
    fi
    log "installing TimescaleDB into $(pg_libdir)"
    as_root make -C "$src/build" install >>"$buildlog" 2>&1 \
        || { tail -n 30 "$buildlog"; log "make install failed (log: $buildlog)"; exit 1; }
    rm -rf "$work"
    log "TimescaleDB $TIMESCALEDB_VERSION installed"
}

python_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    if [ ! -x "$VENV/bin/uv" ]; then
        log "installing uv"
        "$VENV/bin/python" -m pip install -q uv
    fi
    local stamp
    stamp="$VENV/.turnstile-deps-$(sha256sum pyproject.toml | cut -c1-16)"
    [ -f "$stamp" ] && return
    log "installing the project and its dev dependencies into $VENV"
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e '.[dev]'
    rm -f "$VENV"/.turnstile-deps-*
    touch "$stamp"
}

kafka_jars() {
    local lib=deploy/kafka/lib
    if [ -f "$lib/.pom.sha256" ] \
        && [ "$(cat "$lib/.pom.sha256")" = "$(sha256sum deploy/kafka/pom.xml | cut -d' ' -f1)" ]; then
        return
    fi
    log "fetching the Kafka broker's jars (Maven Central) into $lib"
    "$VENV/bin/python" -c 'from turnstile_cli.stack.kafka import ensure_jars; ensure_jars()'
}

system_packages
timescaledb
python_env
kafka_jars
