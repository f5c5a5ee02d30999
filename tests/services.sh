#!/usr/bin/env bash
# What `make test` needs on the machine, brought up by the test run itself:
#   - Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672 (guest/guest), running;
#   - their binaries on the PATH (the fault tests also start their own redis-server and
#     RabbitMQ node; Debian puts rabbitmqctl in /usr/sbin);
#   - Debian's Chromium for the screenshot collector;
#   - Debian's Prometheus (prometheus, promtool) for the metrics, scrape and alert-rule tests;
#   - Debian's nginx for the gateway test (deploy/nginx; started by the test, never here).
# `up`: installs what is missing when allowed (root with apt-get, and COLLECTQ_TEST_INSTALL
# is not `no`), otherwise fails before any test runs, naming what to install; starts what
# is installed but not running, and notes what it started. `down`: stops only what `up`
# started. `.ci/run` and `make test` both use it. With COLLECTQ_TEST_REDIS_URL or
# COLLECTQ_TEST_AMQP_URL set, that service is the caller's: it is not started here.
set -euo pipefail

STATE=${COLLECTQ_TEST_STATE:-tests/results/started-services}
CHROMIUM=${COLLECTQ_CHROMIUM_PATH:-/usr/bin/chromium}
RUNDIR=${COLLECTQ_TEST_RUNDIR:-/tmp/collectq-test-services}
say() { echo "tests/services.sh: $*" >&2; }

install_allowed() {
    [ "${COLLECTQ_TEST_INSTALL:-yes}" != no ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null
}

NEEDED=(redis-server:redis-server redis-cli:redis-tools rabbitmq-server:rabbitmq-server
    rabbitmqctl:rabbitmq-server "$CHROMIUM:chromium" prometheus:prometheus promtool:prometheus
    nginx:nginx)

# The needed commands ("command:package") that are not on the PATH.
missing() {
    local pair
    for pair in "${NEEDED[@]}"; do
        command -v "${pair%%:*}" >/dev/null || echo "$pair"
    done
}

ensure_installed() {
    local gone commands packages
    gone=$(missing)
    [ -z "$gone" ] && return 0
    commands=$(echo "$gone" | cut -d: -f1 | paste -sd' ')
    packages=$(echo "$gone" | cut -d: -f2 | sort -u | paste -sd' ')
    if ! install_allowed; then
        say "not found on the PATH: $commands"
        say "install Debian's $packages (sudo apt-get install -y $packages),"
        say "or run as root to let \`make test\` install them (unless COLLECTQ_TEST_INSTALL=no);"
        case "$gone" in *chromium*) say "COLLECTQ_CHROMIUM_PATH may name a Chromium elsewhere;" ;; esac
        say "\`make test-fast\` runs the tests that need no services. Nothing was run."
        exit 1
    fi
    say "installing $packages (for $commands)"
    # No init system here: keep the packages' scripts from starting services themselves.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    [ -z "$made_policy" ] || rm -f "$policy"
    gone=$(missing)
    [ -z "$gone" ] || { say "still not on the PATH after installing: $gone"; exit 1; }
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
rabbit_up() { rabbitmqctl -q status >/dev/null 2>&1; }

start_redis() {
    redis_up && return 0
    say "starting redis-server on 127.0.0.1:6379"
    mkdir -p "$RUNDIR"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir "$RUNDIR" --logfile "$RUNDIR/redis.log"
    for _ in $(seq 1 100); do redis_up && break; sleep 0.1; done
    redis_up || { say "redis-server did not answer; see $RUNDIR/redis.log"; exit 1; }
    echo redis >>"$STATE"
}

start_rabbitmq() {
    rabbit_up && return 0
    say "starting rabbitmq-server"
    rabbitmq-server -detached
    # await_startup fails at once while the node is not yet known to epmd: poll.
    for _ in $(seq 1 120); do
        rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && break
        sleep 1
    done
    rabbit_up || { say "rabbitmq-server did not start (see /var/log/rabbitmq)"; exit 1; }
    echo rabbitmq >>"$STATE"
}

up() {
    mkdir -p "$(dirname "$STATE")"
    : >"$STATE"
    ensure_installed
    [ -n "${COLLECTQ_TEST_REDIS_URL:-}" ] || start_redis
    [ -n "${COLLECTQ_TEST_AMQP_URL:-}" ] || start_rabbitmq
}

down() {
    [ -f "$STATE" ] || return 0
    if grep -qx redis "$STATE"; then
        say "stopping the redis-server this run started"
        redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
    fi
    if grep -qx rabbitmq "$STATE"; then
        say "stopping the rabbitmq-server this run started"
        rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
    rm -f "$STATE"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
