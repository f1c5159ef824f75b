#!/usr/bin/env bash
# The ovsbridge lab: make this Debian 12 machine ready for the tests and the demo.
#
# Idempotent; run as root (no sudo, no stdin needed). Installs the missing Debian packages,
# starts Open vSwitch and dockerd when they do not answer, and builds the offline test image
# (a busybox-static rootfs through `docker import`: nothing is ever pulled).
set -euo pipefail

IMAGE="${OVSBRIDGE_TEST_IMAGE:-ovsbridge-test:busybox}"
DOCKERD_LOG=/var/log/ovsbridge-lab-dockerd.log
DOCKERD_WAIT=60
PACKAGES=(
    openvswitch-switch openvswitch-common docker.io dnsmasq-base ethtool iproute2
    busybox-static tcpdump procps python3 python3-venv
    ovn-central ovn-host
)
# The distribution's OVN daemons (ovn-ctl's pid files): the lab never runs them in the root
# netns; the multi-host fixture (tests/lab/ovn.py) runs private ones inside its namespaces.
OVN_PIDFILES=(
    /var/run/ovn/ovn-northd.pid:ovn-northd /var/run/ovn/ovnnb_db.pid:ovsdb-server
    /var/run/ovn/ovnsb_db.pid:ovsdb-server /var/run/ovn/ovn-controller.pid:ovn-controller
)

log() { printf 'lab: %s\n' "$*"; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run me as root (the lab installs packages and starts daemons)"

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "packages: all present"
        return
    fi
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # NOTE: without systemd, package scripts would start docker with its default iptables and
    # docker0 bridge. A policy-rc.d that says "no" keeps them from starting anything; we start
    # the daemons ourselves below, with the options the lab needs.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    ((made_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get failed (exit $rc) installing: ${missing[*]}"
}

# A pid file whose process is gone, or a zombie nobody reaped (PID 1 of a container or sandbox
# may never reap), makes ovs-ctl and dockerd believe the daemon still runs: remove it.
drop_stale_pidfile() {
    local file=$1 pid state
    [[ -f $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    state=""
    [[ -n $pid && -r /proc/$pid/stat ]] && state=$(awk '{print $3}' "/proc/$pid/stat")
    if [[ -z $state || $state == Z ]]; then
        log "removing stale pid file $file (pid ${pid:-none} is not running)"
        rm -f "$file"
    fi
}

# Stop, by the PID in its pid file, a root-netns OVN daemon that package scripts started
# despite policy-rc.d. Only when the PID is alive, runs the expected program and lives in
# the root netns (never a fixture's private daemon, never a reused PID of something else).
stop_root_ovn_daemons() {
    local entry file comm pid actual root_ns waited
    # NOTE: /proc/1 may be unreadable in a sandbox; the lab runs in the root netns itself.
    root_ns=$(readlink /proc/$$/ns/net)
    for entry in "${OVN_PIDFILES[@]}"; do
        file=${entry%%:*} comm=${entry#*:}
        [[ -f $file ]] || continue
        pid=$(tr -dc '0-9' <"$file")
        if [[ -z $pid || ! -r /proc/$pid/comm ]]; then
            log "removing stale pid file $file"
            rm -f "$file"
            continue
        fi
        actual=$(cat "/proc/$pid/comm")
        if [[ $actual != "$comm" || $(readlink "/proc/$pid/ns/net") != "$root_ns" ]]; then
            log "leaving pid $pid ($actual) alone: not the root netns $comm of $file"
            continue
        fi
        log "ovn: stopping $comm (pid $pid from $file): the lab runs OVN only in namespaces"
        kill -TERM "$pid" 2>/dev/null || true
        waited=0
        while [[ -d /proc/$pid ]] && ((waited < 50)); do
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.1
            waited=$((waited + 1))
        done
        [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null || true
        rm -f "$file"
    done
}

ovs_answers() {
    ovs-vsctl --timeout=5 show >/dev/null 2>&1 && ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1
}

start_ovs() {
    if ovs_answers; then
        log "openvswitch: running"
        return
    fi
    log "openvswitch: starting (ovs-ctl start)"
    drop_stale_pidfile /var/run/openvswitch/ovsdb-server.pid
    drop_stale_pidfile /var/run/openvswitch/ovs-vswitchd.pid
    /usr/share/openvswitch/scripts/ovs-ctl start || true
    if ! ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1 \
        && ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
        # NOTE: ovs-ctl refuses to start ovs-vswitchd when the kernel has module support
        # but no openvswitch module. The userspace datapath (datapath_type=netdev, what the
        # lab uses) needs no module, so start ovs-vswitchd without ovs-ctl.
        log "openvswitch: no kernel datapath; starting ovs-vswitchd for the userspace datapath"
        ovs-vswitchd unix:/var/run/openvswitch/db.sock -vconsole:emer -vsyslog:err -vfile:info \
            --no-chdir --log-file=/var/log/openvswitch/ovs-vswitchd.log \
            --pidfile=/var/run/openvswitch/ovs-vswitchd.pid --detach --monitor
    fi
    ovs_answers || die "openvswitch does not answer after ovs-ctl start (see /var/log/openvswitch/)"
    log "openvswitch: running"
}

start_docker() {
    if docker info >/dev/null 2>&1; then
        log "docker: running"
        return
    fi
    log "docker: starting dockerd --iptables=false --bridge=none (log: $DOCKERD_LOG)"
    drop_stale_pidfile /var/run/docker.pid
    drop_stale_pidfile /var/run/docker/containerd/containerd.pid
    setsid nohup dockerd --iptables=false --bridge=none >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local waited=0
    until docker info >/dev/null 2>&1; do
        if ((waited >= DOCKERD_WAIT)); then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not answer within ${DOCKERD_WAIT}s (log: $DOCKERD_LOG)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "docker: running"
}

build_image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        log "image: $IMAGE present"
        return
    fi
    log "image: building $IMAGE from busybox-static"
    local busybox root applet
    busybox=$(command -v busybox) || die "busybox not found (package busybox-static)"
    root=$(mktemp -d /tmp/ovsbridge-lab-rootfs.XXXXXX)
    # shellcheck disable=SC2064 # expand $root now
    trap "rm -rf '$root'" EXIT
    mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,var/run,usr/share/udhcpc}
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list) sh ip ping sleep cat ls hostname udhcpc nc; do
        [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
    done
    : >"$root/etc/resolv.conf"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n' >"$root/etc/hosts"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    # A minimal udhcpc hook, so `udhcpc -i IFACE` inside a test container applies its lease.
    cat >"$root/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done ;;
esac
exit 0
EOF
    chmod 755 "$root/usr/share/udhcpc/default.script"
    tar --numeric-owner --owner=0 --group=0 -C "$root" -c . \
        | docker import -c 'CMD ["/bin/sleep","infinity"]' - "$IMAGE" >/dev/null
    rm -rf "$root"
    trap - EXIT
    log "image: $IMAGE built"
}

install_packages
stop_root_ovn_daemons
start_ovs
start_docker
build_image
log "ready"
