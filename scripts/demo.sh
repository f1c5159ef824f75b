#!/usr/bin/env bash
# The demo: `./scripts/demo.sh`, as root. Shows the main job on a self-contained lab.
#
# Part 1: two containers without any network (--net=none) get an interface on an OVS bridge
# with static addresses, `ovsbridge ps` shows which port is which container, one pings the other.
# Part 2: the blog post's whole flow on a simulated LAN: a router netns running dnsmasq (the
# LAN's DHCP server) and a simulated host (a netns with its own private Open vSwitch) whose
# eth0 goes into ovsbr0 with `setup-bridge`; a --net=none container is attached with `dhcp`,
# takes its address from the router, and pings it. The machine's own uplink is never touched.
# Part 3: two hosts, one segment, through OVN: a central (northbound/southbound databases and
# ovn-northd) and two simulated hosts joined by an underlay; each host joins OVN, one logical
# switch with OVN's DHCP spans both, a container on each host pings the other across Geneve.
# Every command is printed before it runs, as in a tutorial. Everything the demo makes
# (containers, bridges, namespaces, daemons) is removed at the end, even when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/lab.sh >/dev/null
if [[ ! -x .venv/bin/ovsbridge ]]; then
    echo "demo: creating .venv with ovsbridge installed"
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install -q -e .
fi
export PATH="$PWD/.venv/bin:$PATH"
# NOTE: the demo's ovsbridge daemon (the CLI starts one for the calls that follow) lives in
# private directories and is stopped at the end: the demo leaves no daemon and never touches
# this machine's /run/ovsbridge.
DEMO_HOME=$(mktemp -d /tmp/ovsbridge-demo-home.XXXXXX)
export OVSBRIDGE_RUN_DIR="$DEMO_HOME/run" OVSBRIDGE_STATE_DIR="$DEMO_HOME/state"

IMAGE="${OVSBRIDGE_TEST_IMAGE:-ovsbridge-test:busybox}"
suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
BRIDGE="demobr$suffix"
WEB="demo-web-$suffix"
DB="demo-db-$suffix"

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s# %s%s\n' "$bold" "$*" "$plain"; }
run() {
    printf '$ %s\n' "$*"
    "$@"
}

LAN="demo-lan-$suffix"
SIMSTATE=""
OVNSTATE=""
OVN_A="demo-ovn-a-$suffix"
OVN_B="demo-ovn-b-$suffix"

cleanup() {
    local rc=$?
    trap - EXIT
    step "Clean up: remove the containers, the bridge and the simulated LAN"
    run docker rm -f "$WEB" "$DB" "$LAN" "$OVN_A" "$OVN_B" || true
    run ovs-vsctl --if-exists del-br "$BRIDGE" || true
    ovsbridge daemon stop >/dev/null 2>&1 || true
    rm -rf "$DEMO_HOME"
    if [[ -n $SIMSTATE && -f $SIMSTATE ]]; then
        sim ovsbridge daemon stop >/dev/null 2>&1 || true
        run python tests/lab/simhost.py down --state "$SIMSTATE" || true
        rm -f "$SIMSTATE"
    fi
    if [[ -n $OVNSTATE && -f $OVNSTATE ]]; then
        run python tests/lab/ovn.py down --state "$OVNSTATE" || true
        rm -f "$OVNSTATE"
    fi
    if ((rc == 0)); then
        printf '\ndemo: done\n'
    else
        printf '\ndemo: failed (exit %d)\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

step "Two containers with no network at all (--net=none)"
run docker run -d --name "$WEB" --network none "$IMAGE"
run docker run -d --name "$DB" --network none "$IMAGE"
run docker exec "$WEB" ip addr

step "Attach them to an OVS bridge with static addresses (the bridge is created on demand)"
run ovsbridge attach "$BRIDGE" "$WEB" 198.51.100.11/24 --create-bridge
run ovsbridge attach "$BRIDGE" "$DB" 198.51.100.12/24
run docker exec "$WEB" ip addr

step "Which OVS port is which container?"
run ovsbridge ps "$BRIDGE"

step "The containers reach each other through the bridge"
run docker exec "$WEB" ping -c 3 198.51.100.12

step "Attaching again changes nothing"
run ovsbridge attach "$BRIDGE" "$WEB" 198.51.100.11/24

step "Detach them: their interfaces and OVS ports are gone"
run ovsbridge detach "$WEB"
run ovsbridge detach "$DB"
run ovsbridge ps "$BRIDGE"

printf '\n%s== Part 2: the blog post, on a simulated LAN ==%s\n' "$bold" "$plain"
step "Build the LAN: a router (198.51.100.1, dnsmasq DHCP) and a host whose eth0 faces it"
SIMSTATE=$(mktemp /tmp/ovsbridge-demo-XXXXXX.json)
python tests/lab/simhost.py up --dhcp --static --state "$SIMSTATE" >/dev/null
HOST_NS=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["host_ns"])' "$SIMSTATE")
SIM_DB=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["db"])' "$SIMSTATE")
SIM_TMP=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["tmpdir"])' "$SIMSTATE")
ROUTER=198.51.100.1
echo "simulated host: netns $HOST_NS, its own OVS at $SIM_DB"
# On the simulated host, every command runs inside its netns, against its own OVS and with
# its own daemon directories (never this machine's /run/ovsbridge).
sim() {
    printf '[%s]$ %s\n' "host" "$*"
    ip netns exec "$HOST_NS" env OVSBRIDGE_DB="$SIM_DB" OVSBRIDGE_RUN_DIR="$SIM_TMP/run" \
        OVSBRIDGE_STATE_DIR="$SIM_TMP/state" OVSBRIDGE_CONF_DIR="$SIM_TMP/etc" "$@"
}
sim ip -br addr show eth0
sim ip route

step "Move the host's eth0 into ovsbr0 (addresses and routes follow; --yes confirms once the gateway answers)"
sim ovsbridge setup-bridge eth0 --yes
sim ip -br addr show ovsbr0
sim ip route

step "A container with no network, attached with dhcp: it takes a LAN address from the router"
run docker run -d --name "$LAN" --network none "$IMAGE"
sim ovsbridge attach ovsbr0 "$LAN" dhcp
sim ovsbridge ps ovsbr0
run docker exec "$LAN" ip addr show eth1
run docker exec "$LAN" ping -c 3 "$ROUTER"

step "The daemon keeps the lease (renews at T1, rebinds at T2)"
sim ovsbridge daemon status

step "Undo: detach, then give eth0 its addresses and routes back"
sim ovsbridge detach "$LAN"
sim ovsbridge teardown-bridge
sim ip -br addr show eth0

printf '\n%s== Part 3: two hosts, one segment, through OVN ==%s\n' "$bold" "$plain"
step "Build a central (OVN databases + ovn-northd at 203.0.113.10) and two hosts on an underlay"
OVNSTATE=$(mktemp /tmp/ovsbridge-demo-ovn-XXXXXX.json)
python tests/lab/ovn.py up --hosts 2 --state "$OVNSTATE" >/dev/null
CENTRAL=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["sb"])' "$OVNSTATE")
# On host N, every command runs inside its netns, against its own OVS, OVN and daemon dirs.
hv() {
    local n=$1
    shift
    printf '[hv%s]$ %s\n' "$n" "$*"
    local -a envs
    mapfile -t envs < <(python -c 'import json,sys
h = json.load(open(sys.argv[1]))["hosts"][int(sys.argv[2]) - 1]
print(h["ns"]); print("OVSBRIDGE_DB=" + h["db"])
for k, v in h["env"].items(): print(f"{k}={v}")' "$OVNSTATE" "$n")
    ip netns exec "${envs[0]}" env "${envs[@]:1}" "$@"
}

step "Each host joins OVN: chassis, Geneve, ovn-controller (started the distribution's way)"
hv 1 ovsbridge ovn join --central "$CENTRAL" --system-id hv1
hv 2 ovsbridge ovn join --central "$CENTRAL" --system-id hv2
hv 1 ovsbridge ovn join --central "$CENTRAL" --system-id hv1   # again: a no-op
hv 1 ovsbridge ovn status

step "One logical switch with OVN's own DHCP, spanning both hosts"
hv 1 ovsbridge ovn switch create demo --subnet 198.51.100.0/24 --dhcp
hv 2 ovsbridge ovn switch list

step "A --net=none container on each host, attached with dhcp to the switch"
run docker run -d --name "$OVN_A" --network none "$IMAGE"
run docker run -d --name "$OVN_B" --network none "$IMAGE"
hv 1 ovsbridge attach br-int "$OVN_A" dhcp --ovn-switch demo
hv 2 ovsbridge attach br-int "$OVN_B" dhcp --ovn-switch demo
hv 2 ovsbridge ps br-int
B_IP=$(docker exec "$OVN_B" ip -4 -o addr show eth1 | awk '{print $4}' | cut -d/ -f1)

step "hv1's container reaches hv2's across the Geneve tunnel"
run docker exec "$OVN_A" ping -c 3 "$B_IP"

step "Undo: detach both, and each host leaves OVN exactly as it was"
hv 1 ovsbridge detach "$OVN_A"
hv 2 ovsbridge detach "$OVN_B"
hv 1 ovsbridge ovn switch delete demo
hv 1 ovsbridge ovn leave
hv 2 ovsbridge ovn leave
