#!/usr/bin/env bash
# The demo: `./scripts/demo.sh`, as root. Shows the main job on a self-contained lab.
#
# Two containers without any network (--net=none) get an interface on an OVS bridge with
# static addresses, `ovsbridge ps` shows which port is which container, and one pings the
# other. Every command is printed before it runs, as in a tutorial. Everything the demo makes
# (containers, bridge) is removed at the end, even when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/lab.sh >/dev/null
if [[ ! -x .venv/bin/ovsbridge ]]; then
    echo "demo: creating .venv with ovsbridge installed"
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install -q -e .
fi
export PATH="$PWD/.venv/bin:$PATH"

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

cleanup() {
    local rc=$?
    trap - EXIT
    step "Clean up: remove the containers and the bridge"
    run docker rm -f "$WEB" "$DB" || true
    run ovs-vsctl --if-exists del-br "$BRIDGE" || true
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
