#!/usr/bin/env bash
# Make this machine able to build and run the compose stack with rootful podman
# (no Docker engine, no registry; see README "Deployment with compose"):
#   1. Debian packages: podman runc fuse-overlayfs slirp4netns uidmap debootstrap docker-compose
#      netavark aardvark-dns iptables (and a few more, PACKAGES);
#   2. a containers.conf.d drop-in: runc (crun refuses this VM's hybrid cgroups), default
#      ulimits the VM allows, the netavark network backend;
#   3. podman's Docker-compatible socket for docker-compose (DOCKER_HOST, printed);
#   4. the base image localhost/debian:bookworm-slim from debootstrap, with the host's CA
#      certificates (HTTPS from builds goes through an intercepting proxy) and apt settings.
# Idempotent: a second run checks and returns in seconds. Root only.
set -euo pipefail

BASE_IMAGE=${COLLECTQ_BASE_IMAGE:-localhost/debian:bookworm-slim}
SOCKET=${COLLECTQ_PODMAN_SOCKET:-/run/podman/podman.sock}
DROPIN=/etc/containers/containers.conf.d/50-collectq.conf
# The socket's own config: the drop-in plus a default seccomp profile that is podman's with
# deploy/seccomp's rule merged in. docker-compose sends a `security_opt: seccomp=FILE` as the
# file's content (Docker's API), which podman 4.3 takes for a path and refuses: so the test
# stack gets the screenshot worker's profile as the default of this socket instead
# (README "Deployment with compose").
SERVICE_CONF=/etc/containers/collectq-compose.conf
SECCOMP=/etc/containers/collectq-chromium-seccomp.json
# catatonit: compose's `init: true`; netavark + aardvark-dns: the network backend whose DNS
# resolves service names (Debian's default CNI setup has no DNS plugin); iptables: netavark
# sets up bridge networks with it (without it every `run` fails "netavark: No such file or
# directory"; a recommends of podman, not a dependency).
PACKAGES=(podman runc fuse-overlayfs slirp4netns uidmap debootstrap docker-compose catatonit
    netavark aardvark-dns iptables jq)
PIDFILE=/run/podman/collectq-service.pid
say() { echo "tests/deploy/setup.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || { say "run as root (rootful podman)"; exit 1; }

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    # No init system: keep package scripts from starting services.
    local policy=/usr/sbin/policy-rc.d made=
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made=1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$made" ] || rm -f "$policy"
}

write_dropin() {
    local n want
    n=$(ulimit -Hn)
    want=$(printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n\n[engine]\nruntime = "runc"\n\n[network]\nnetwork_backend = "netavark"\n' "$n" "$n")
    if [ "$(cat "$DROPIN" 2>/dev/null)" != "$want" ]; then
        mkdir -p "$(dirname "$DROPIN")"
        printf '%s\n' "$want" >"$DROPIN"
        say "wrote $DROPIN"
        stop_service
    fi
}

write_service_conf() {
    local here want
    here=$(cd "$(dirname "$0")/../.." && pwd)
    jq --slurpfile add "$here/deploy/seccomp/chromium-sandbox-rules.json" \
        '.syscalls += $add[0].syscalls' /usr/share/containers/seccomp.json >"$SECCOMP.new"
    if cmp -s "$SECCOMP.new" "$SECCOMP"; then rm -f "$SECCOMP.new"; else mv "$SECCOMP.new" "$SECCOMP"; fi
    want=$(sed "s|^\[containers\]\$|[containers]\nseccomp_profile = \"$SECCOMP\"|" "$DROPIN")
    if [ "$(cat "$SERVICE_CONF" 2>/dev/null)" != "$want" ]; then
        printf '%s\n' "$want" >"$SERVICE_CONF"
        say "wrote $SERVICE_CONF"
        stop_service
    fi
}

# Stop the service this script started (it would keep the settings it started with).
stop_service() {
    [ -f "$PIDFILE" ] || return 0
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
    sleep 1
}

# docker-compose talks to podman through this socket; podman serves it until killed. A
# service this script started earlier is replaced by a fresh one: a long-lived one goes
# stale ("write child: broken pipe" on the next build).
start_socket() {
    stop_service
    if curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then return 0; fi
    mkdir -p "$(dirname "$SOCKET")"
    rm -f "$SOCKET"
    say "starting podman system service on $SOCKET"
    # BUILDAH_FORMAT=docker: builds through the socket keep HEALTHCHECK.
    CONTAINERS_CONF=$SERVICE_CONF BUILDAH_FORMAT=docker setsid nohup podman system service --time=0 "unix://$SOCKET" \
        >/var/log/collectq-podman-service.log 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 50); do
        curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    say "the podman socket does not answer (see /var/log/collectq-podman-service.log)"
    exit 1
}

# The apt mirror this machine uses (deb822 sources or a classic list).
mirror() {
    local m
    m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)
    [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | head -1)
    echo "${m:-http://deb.debian.org/debian}"
}

make_base_image() {
    podman image exists "$BASE_IMAGE" && return 0
    local dir
    dir=$(mktemp -d /var/tmp/collectq-rootfs.XXXXXX)
    trap 'rm -rf "$dir"' RETURN
    say "debootstrap bookworm from $(mirror) (about half a minute)"
    debootstrap --variant=minbase bookworm "$dir" "$(mirror)" >/var/log/collectq-debootstrap.log 2>&1 ||
        { say "debootstrap failed: see /var/log/collectq-debootstrap.log"; exit 1; }
    # HTTPS inside builds (pip, uv) goes through this machine's intercepting proxy.
    mkdir -p "$dir/etc/ssl/certs" "$dir/usr/local/share/ca-certificates"
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true
    printf 'Acquire::Check-Valid-Until "false";\n' >"$dir/etc/apt/apt.conf.d/99collectq-snapshot"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$(mirror)" "$(mirror)" >"$dir/etc/apt/sources.list"
    rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
    local ca=/etc/ssl/certs/ca-certificates.crt
    tar -C "$dir" -c . | podman import \
        --change "ENV SSL_CERT_FILE=$ca" --change "ENV PIP_CERT=$ca" \
        --change "ENV REQUESTS_CA_BUNDLE=$ca" \
        --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    say "imported $BASE_IMAGE"
}

install_packages
write_dropin
write_service_conf
start_socket
make_base_image
echo "DOCKER_HOST=unix://$SOCKET"
