#!/usr/bin/env bash
# Installs what `make run` and `make test` need, skipping every step already done:
#   1. Debian packages: PostgreSQL 15 with tdigest and pg_partman (and a JRE and Maven
#      when missing), without letting Debian create and start a `main` cluster;
#   2. the Python venv (.venv, python3 -m venv + uv) with the project and its dev extras,
#      keyed to the hash of pyproject.toml;
#   3. the Kafka broker's jars from Maven Central (deploy/kafka/lib), keyed to pom.xml.
# A repeat run costs well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PG_PACKAGES=(postgresql-15 postgresql-15-tdigest postgresql-15-partman)

log() { printf '[install] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

system_packages() {
    local missing=()
    for pkg in "${PG_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    # the dashboard's browser test drives Debian's chromium (never a downloaded browser)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ "${#missing[@]}" -eq 0 ] && return
    # Our clusters live in the state folder; a Debian `main` cluster on 5432 would only
    # get in the way (and start at boot), so tell postgresql-common not to create one.
    local conf=/etc/postgresql-common/createcluster.conf
    if ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf" 2>/dev/null; then
        log "disabling Debian's main cluster in $conf"
        as_root mkdir -p "$(dirname "$conf")"
        echo 'create_main_cluster = false' | as_root tee -a "$conf" >/dev/null
    fi
    log "apt-get install ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get install -y -q \
        --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}"
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
python_env
kafka_jars
