"""setup-bridge, teardown-bridge and confirm on a simulated host (never this machine's uplink).

Each test gets its own SimHost (tests/lab/simhost.py): a host netns whose eth0 leads to an
upstream-router netns, and a private OVS (own ovsdb-server and ovs-vswitchd inside the host
netns) that the CLI reaches with --db. The CLI runs inside the host netns. State is observed
with iproute2's JSON and ovs-vsctl, independently of ovsbridge's own code.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.simhost import HOST_V4, ROUTER_V4, ROUTER_V6, SimHost

pytestmark = pytest.mark.lab

UPLINK_MARK = "ovsbridge.uplink"


@pytest.fixture
def simhost(lab_session: Any) -> Iterator[SimHost]:
    sim = SimHost()
    for name in (sim.host_ns, sim.router_ns):
        lab_session.claim(name)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
    assert not Path(f"/run/netns/{sim.host_ns}").exists()


@pytest.fixture
def static_host(simhost: SimHost) -> SimHost:
    simhost.configure_static()
    return simhost


# ----- helpers ---------------------------------------------------------------------------
def moved(entries: list[Any], old: str, new: str) -> list[Any]:
    """Address tuples of OLD as they should read on NEW (the IPv4 label follows the link)."""
    out = []
    for entry in entries:
        fam, local, plen, label, flags = entry
        out.append((fam, local, plen, label.replace(old, new, 1) if label else label, flags))
    return sorted(out)


def stray_pids(sim: SimHost) -> list[int]:
    """Processes in the host netns other than the private OVS (a watchdog, say)."""
    ovs = {sim.pids.get("ovsdb-server"), sim.pids.get("ovs-vswitchd")}
    return [p for p in sim.netns_pids(sim.host_ns) if p not in ovs]


def watchdogs(sim: SimHost, cli: subprocess.Popen[str]) -> list[int]:
    """The rollback watchdog(s) running in the host netns."""
    out = []
    for pid in stray_pids(sim):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if pid != cli.pid and b"ovsbridge.daemon.uplink_watchdog" in argv:
            out.append(pid)
    return out


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def no_stray_processes(sim: SimHost) -> None:
    wait_for("the watchdog to exit", lambda: not stray_pids(sim), timeout=15)


def port_on(sim: SimHost, port: str) -> str | None:
    out = sim.vsctl("port-to-br", port, check=False)
    return out.stdout.strip() or None


def settled_snapshot(sim: SimHost) -> dict[str, Any]:
    sim.wait_dad()
    return sim.snapshot()


# ----- the main flow ---------------------------------------------------------------------
def test_setup_moves_everything_and_tcp_survives(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    eth0 = before["net"]["eth0"]
    assert len(eth0["addresses"]) == 3 and len(eth0["routes"]) >= 5

    with sim.heartbeat() as beat:
        res = sim.ovsbridge("setup-bridge", "eth0", "--yes", "--confirm-timeout", "30")
        time.sleep(1.5)  # keep beating well after the move
    assert res.returncode == 0, res.stderr
    assert "ovsbr0 is set up" in res.stdout

    stats = beat.stats
    print(f"heartbeat during setup-bridge: {stats}")
    assert stats.get("error") is None, stats
    assert stats["echoed"] >= 10, stats
    # The must-show bound of the issue: the session survives with no gap over 2 s.
    assert stats["max_gap"] < 2.0, stats

    after = settled_snapshot(sim)["net"]
    bridge, uplink = after["ovsbr0"], after["eth0"]
    assert bridge["addresses"] == moved(eth0["addresses"], "eth0", "ovsbr0")
    assert bridge["routes"] == eth0["routes"]
    assert uplink["addresses"] == [] and uplink["routes"] == []
    assert bridge["mac"] == eth0["mac"] == uplink["mac"]
    assert bridge["mtu"] == eth0["mtu"]
    assert bridge["up"]
    assert port_on(sim, "eth0") == "ovsbr0"
    mark = sim.vsctl("get", "Bridge", "ovsbr0", f"external_ids:{UPLINK_MARK}").stdout
    assert mark.strip().strip('"') == "eth0"
    dp = sim.vsctl("get", "Bridge", "ovsbr0", "datapath_type").stdout.strip()
    assert dp == "netdev"
    hw = sim.vsctl("get", "Bridge", "ovsbr0", "other-config:hwaddr").stdout.strip()
    assert hw.strip('"') == eth0["mac"]
    no_stray_processes(sim)

    # Reachable through the moved routes: main default, the specific route, IPv6.
    for target in (ROUTER_V4, "203.0.113.1", ROUTER_V6):
        probe = sim.run_in_host(["python3", "-c", _TCP_PROBE, target])
        assert probe.returncode == 0, (target, probe.stderr)

    again = sim.ovsbridge("setup-bridge", "eth0", "--yes")
    assert again.returncode == 0, again.stderr
    assert "already set up" in again.stdout

    down = sim.ovsbridge("teardown-bridge")
    assert down.returncode == 0, down.stderr
    assert settled_snapshot(sim) == before
    no_stray_processes(sim)


# A TCP connect to port 9 of TARGET: a RST (refused) proves the round trip as well as an accept.
_TCP_PROBE = """
import socket, sys
target = sys.argv[1]
fam = socket.AF_INET6 if ":" in target else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(3)
try:
    s.connect((target, 9))
except ConnectionRefusedError:
    pass
"""


def test_json_dry_run_changes_nothing(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    res = sim.ovsbridge("setup-bridge", "eth0", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    plan = doc["plan"]
    assert doc["status"] == "dry run"
    assert plan["bridge"] == "ovsbr0" and plan["uplink"] == "eth0"
    assert plan["datapath"] == "netdev"
    assert plan["mac"] == before["net"]["eth0"]["mac"]
    assert {a["address"] for a in plan["addresses"]} == {*HOST_V4, "2001:db8:1::10/64"}
    assert {r["table"] for r in plan["routes"]} == {254, 100}
    assert all(r["dev"] == "ovsbr0" for r in plan["routes"])
    assert plan["gateways"] == [ROUTER_V4, ROUTER_V6]
    assert settled_snapshot(sim) == before


def test_json_result_is_one_document(static_host: SimHost) -> None:
    sim = static_host
    res = sim.ovsbridge("setup-bridge", "eth0", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["status"] == "confirmed"
    assert {c["gateway"] for c in doc["checks"] if c["ok"]} == {ROUTER_V4, ROUTER_V6}
    down = sim.ovsbridge("teardown-bridge", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["status"] == "torn down"


# ----- safety net ------------------------------------------------------------------------
def test_unreachable_gateway_rolls_back_exactly(static_host: SimHost) -> None:
    sim = static_host
    sim.run_in_router(["ip", "addr", "del", f"{ROUTER_V4}/24", "dev", sim.router_if], check=True)
    before = settled_snapshot(sim)
    res = sim.ovsbridge("setup-bridge", "eth0", "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"the default gateway {ROUTER_V4} did not answer through ovsbr0" in res.stderr
    assert "rolled back" in res.stderr
    assert settled_snapshot(sim) == before
    no_stray_processes(sim)


def test_no_confirmation_rolls_back_at_timeout(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    started = time.monotonic()
    res = sim.ovsbridge("setup-bridge", "eth0", "--confirm-timeout", "3")
    took = time.monotonic() - started
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no confirmation within 3 s" in res.stderr
    assert took >= 3  # it did wait for the confirmation
    assert settled_snapshot(sim) == before
    no_stray_processes(sim)
    print(f"setup + 3 s wait + rollback took {took:.2f} s")


def test_confirm_from_another_shell_keeps_it(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    cli = sim.ovsbridge_popen("setup-bridge", "eth0", "--confirm-timeout", "120")

    wait_for(
        "setup-bridge to apply",
        lambda: port_on(sim, "eth0") == "ovsbr0" and bool(watchdogs(sim, cli)),
    )
    # The watchdog ignores SIGHUP (an SSH session closing sends it).
    for pid in watchdogs(sim, cli):
        os.kill(pid, signal.SIGHUP)

    def confirmed() -> bool:
        res = sim.ovsbridge("confirm")
        assert res.returncode in (0, 3, 4), res.stderr  # 3/4: not armed / still applying
        return res.returncode == 0 and "confirmed: ovsbr0 stays" in res.stdout

    wait_for("the confirmation", confirmed)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert "ovsbr0 is set up" in out
    assert port_on(sim, "eth0") == "ovsbr0"
    assert sim.net_state()["eth0"]["addresses"] == []
    no_stray_processes(sim)
    nothing = sim.ovsbridge("confirm")
    assert nothing.returncode == 3
    assert "no setup-bridge is waiting" in nothing.stderr

    down = sim.ovsbridge("teardown-bridge")
    assert down.returncode == 0, down.stderr
    assert settled_snapshot(sim) == before


@pytest.mark.parametrize("step", ["ovs", "move"])
def test_cli_killed_midway_watchdog_restores(static_host: SimHost, step: str) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    cli = sim.ovsbridge_popen(
        "setup-bridge",
        "eth0",
        "--yes",
        "--confirm-timeout",
        "600",
        env={"OVSBRIDGE_TEST_PAUSE_AFTER": step},
    )
    if step == "ovs":
        wait_for("the OVS step", lambda: port_on(sim, "eth0") == "ovsbr0")
    else:
        wait_for(
            "the addresses to move",
            lambda: bool(sim.addresses("ovsbr0")) and not sim.addresses("eth0"),
        )
    killed_at = time.monotonic()
    cli.send_signal(signal.SIGKILL)
    cli.wait(timeout=10)
    assert cli.returncode == -signal.SIGKILL

    wait_for(
        "the rollback", lambda: port_on(sim, "eth0") is None and len(sim.addresses("eth0")) == 3
    )
    no_stray_processes(sim)
    print(f"rollback after SIGKILL at step {step}: {time.monotonic() - killed_at:.2f} s")
    assert settled_snapshot(sim) == before


def test_sigterm_to_the_watchdog_rolls_back(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    cli = sim.ovsbridge_popen("setup-bridge", "eth0", "--confirm-timeout", "600")
    wait_for(
        "setup-bridge to apply", lambda: not sim.addresses("eth0") and bool(watchdogs(sim, cli))
    )
    time.sleep(0.5)
    for pid in watchdogs(sim, cli):
        os.kill(pid, signal.SIGTERM)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1
    assert "SIGTERM" in err
    assert settled_snapshot(sim) == before
    no_stray_processes(sim)


# ----- bad input: documented exit code, one line, nothing changed ------------------------
def _expect_refusal(sim: SimHost, args: list[str], code: int, words: str) -> None:
    before = settled_snapshot(sim)
    res = sim.ovsbridge(*args)
    assert res.returncode == code, (args, res.stdout, res.stderr)
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("error: "), res.stderr
    assert words in first, res.stderr
    assert settled_snapshot(sim) == before
    no_stray_processes(sim)


def test_refuses_missing_uplink(static_host: SimHost) -> None:
    _expect_refusal(static_host, ["setup-bridge", "eth9"], 3, 'uplink "eth9" does not exist')


def test_refuses_loopback(static_host: SimHost) -> None:
    _expect_refusal(static_host, ["setup-bridge", "lo"], 2, "loopback")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["setup-bridge", "eth0", "--bridge", "eth0"], "the uplink and the bridge are both"),
        (["setup-bridge", "eth0", "--bridge", "a" * 16], "bridge name"),
        (["setup-bridge", "eth0", "--datapath", "kernel"], "Invalid value for '--datapath'"),
        (
            ["setup-bridge", "eth0", "--confirm-timeout", "0"],
            "Invalid value for '--confirm-timeout'",
        ),
    ],
)
def test_refuses_bad_arguments(static_host: SimHost, args: list[str], words: str) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    res = sim.ovsbridge(*args)
    assert res.returncode == 2, res.stderr
    assert words in res.stderr
    assert settled_snapshot(sim) == before


def test_refuses_system_datapath_without_kernel_module(static_host: SimHost) -> None:
    if os.path.isdir("/sys/module/openvswitch"):
        pytest.skip("the openvswitch kernel module is loaded here")
    _expect_refusal(
        static_host, ["setup-bridge", "eth0", "--datapath", "system"], 5, "kernel module"
    )


def test_refuses_linux_bridge_port(static_host: SimHost) -> None:
    sim = static_host
    h = sim.host_ns
    subprocess.run(["ip", "-n", h, "link", "add", "lbr0", "type", "bridge"], check=True)
    subprocess.run(
        ["ip", "-n", h, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"], check=True
    )
    subprocess.run(["ip", "-n", h, "link", "set", "eth1", "master", "lbr0"], check=True)
    _expect_refusal(sim, ["setup-bridge", "eth1"], 4, 'is a port of Linux bridge "lbr0"')


def test_refuses_bond_member(static_host: SimHost) -> None:
    sim = static_host
    made = subprocess.run(
        ["ip", "-n", sim.host_ns, "link", "add", "bond0", "type", "bond"],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(
            f"no bonding in this kernel ({made.stderr.strip()}); "
            "tests/unit/test_uplink.py covers the check"
        )
    subprocess.run(
        ["ip", "-n", sim.host_ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"],
        check=True,
    )
    subprocess.run(["ip", "-n", sim.host_ns, "link", "set", "eth1", "master", "bond0"], check=True)
    _expect_refusal(sim, ["setup-bridge", "eth1"], 4, 'is a member of bond "bond0"')


def test_refuses_port_of_another_ovs_bridge(static_host: SimHost) -> None:
    sim = static_host
    subprocess.run(
        ["ip", "-n", sim.host_ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"],
        check=True,
    )
    sim.vsctl(
        "add-br",
        "other0",
        "--",
        "set",
        "Bridge",
        "other0",
        "datapath_type=netdev",
        "--",
        "add-port",
        "other0",
        "eth1",
    )
    _expect_refusal(sim, ["setup-bridge", "eth1"], 4, 'already a port of OVS bridge "other0"')


def test_refuses_foreign_bridge_of_that_name(static_host: SimHost) -> None:
    sim = static_host
    sim.vsctl("add-br", "ovsbr0", "--", "set", "Bridge", "ovsbr0", "datapath_type=netdev")
    _expect_refusal(sim, ["setup-bridge", "eth0"], 4, "was not set up by setup-bridge")


def test_refuses_bridge_with_another_uplink(static_host: SimHost) -> None:
    sim = static_host
    res = sim.ovsbridge("setup-bridge", "eth0", "--yes")
    assert res.returncode == 0, res.stderr
    subprocess.run(
        ["ip", "-n", sim.host_ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"],
        check=True,
    )
    _expect_refusal(sim, ["setup-bridge", "eth1"], 4, 'already has the uplink "eth0"')
    assert sim.ovsbridge("teardown-bridge").returncode == 0


# ----- teardown ------------------------------------------------------------------------------
def _fake_container_port(sim: SimHost, name: str) -> None:
    """A veth on the bridge tagged the way attach tags a container's port."""
    subprocess.run(
        ["ip", "-n", sim.host_ns, "link", "add", name, "type", "veth", "peer", "name", name + "p"],
        check=True,
    )
    sim.vsctl(
        "add-port",
        "ovsbr0",
        name,
        "--",
        "set",
        "Interface",
        name,
        "external_ids:ovsbridge.owner=ovsbridge",
        "external_ids:ovsbridge.container_name=web1",
    )


def test_teardown_refuses_attached_containers_unless_force(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    assert sim.ovsbridge("setup-bridge", "eth0", "--yes").returncode == 0
    _fake_container_port(sim, "ovbtest1")
    mid = settled_snapshot(sim)
    res = sim.ovsbridge("teardown-bridge")
    assert res.returncode == 4, res.stderr
    assert "ovbtest1" in res.stderr and "--force" in res.stderr
    assert settled_snapshot(sim) == mid

    res = sim.ovsbridge("teardown-bridge", "--force")
    assert res.returncode == 0, res.stderr
    assert "detached port ovbtest1" in res.stderr
    assert sim.link("ovbtest1") is None
    assert settled_snapshot(sim) == before


def test_teardown_of_nothing_is_fine(simhost: SimHost) -> None:
    res = simhost.ovsbridge("teardown-bridge")
    assert res.returncode == 0, res.stderr
    assert "nothing to tear down" in res.stdout


def test_teardown_refuses_foreign_bridge(static_host: SimHost) -> None:
    sim = static_host
    sim.vsctl("add-br", "ovsbr0", "--", "set", "Bridge", "ovsbr0", "datapath_type=netdev")
    res = sim.ovsbridge("teardown-bridge")
    assert res.returncode == 4
    assert "not set up by setup-bridge" in res.stderr
    assert sim.vsctl("br-exists", "ovsbr0", check=False).returncode == 0


def test_persist_writes_and_teardown_removes_the_boot_config(static_host: SimHost) -> None:
    sim = static_host
    res = sim.ovsbridge("setup-bridge", "eth0", "--yes", "--persist")
    assert res.returncode == 0, res.stderr
    assert sim.tmpdir is not None
    conf = sim.tmpdir / "etc" / "setup-bridge-ovsbr0.env"
    text = conf.read_text()
    assert "UPLINK=eth0\n" in text and "DATAPATH=netdev\n" in text
    assert "systemctl enable ovsbridge-setup-bridge@ovsbr0.service" in res.stdout
    down = sim.ovsbridge("teardown-bridge")
    assert down.returncode == 0, down.stderr
    assert not conf.exists()


def test_resume_after_reboot_like_state(static_host: SimHost) -> None:
    """At boot OVS brings the bridge and port back while the network config puts the
    addresses on eth0 again: setup-bridge moves them without touching OVS."""
    sim = static_host
    before = settled_snapshot(sim)
    assert sim.ovsbridge("setup-bridge", "eth0", "--yes").returncode == 0
    configured = settled_snapshot(sim)
    # Simulate the boot: addresses and routes back on eth0, the bridge (kept by OVS) bare.
    for cidr in ("198.51.100.11/24", "198.51.100.10/24", "2001:db8:1::10/64"):
        subprocess.run(["ip", "-n", sim.host_ns, "addr", "del", cidr, "dev", "ovsbr0"], check=True)
    subprocess.run(["ip", "-n", sim.host_ns, "route", "flush", "dev", "ovsbr0"], check=False)
    subprocess.run(["ip", "-n", sim.host_ns, "route", "flush", "table", "100"], check=False)
    subprocess.run(["ip", "-n", sim.host_ns, "-6", "route", "flush", "dev", "ovsbr0"], check=False)
    sim.configure_static()
    res = sim.ovsbridge("setup-bridge", "eth0", "--yes")
    assert res.returncode == 0, res.stderr
    assert "exists (resuming)" in res.stdout
    after = settled_snapshot(sim)
    assert after["net"]["ovsbr0"]["addresses"] == configured["net"]["ovsbr0"]["addresses"]
    assert after["net"]["ovsbr0"]["routes"] == configured["net"]["ovsbr0"]["routes"]
    assert after["net"]["eth0"]["addresses"] == []
    assert sim.ovsbridge("teardown-bridge").returncode == 0
    assert settled_snapshot(sim) == before


# ----- DHCP uplink -------------------------------------------------------------------------
# The simulated host's own DHCP client: a lease on eth0 with client id 01:MAC (what udhcpc
# sends), applied with its default route. ovsbridge's DHCP adapter plays that client here.
_HOST_DHCP_CLIENT = """
import sys
from ovsbridge.system import dhcp
mac = sys.argv[1]
lease = dhcp.acquire("/proc/self/ns/net", "eth0", mac=mac, hostname="simhost",
                     client_id=b"\\x01" + bytes.fromhex(mac.replace(":", "")), timeout=20)
dhcp.apply_lease("/proc/self/ns/net", "eth0", lease, default_route=True)
print(lease.address)
"""


@pytest.fixture
def dhcp_host(lab_session: Any) -> Iterator[SimHost]:
    sim = SimHost(dhcp=True)
    for name in (sim.host_ns, sim.router_ns):
        lab_session.claim(name)
    sim.start()
    try:
        got = sim.run_in_host([sys.executable, "-c", _HOST_DHCP_CLIENT, sim.uplink_mac])
        assert got.returncode == 0, got.stderr
        yield sim
    finally:
        sim.ovsbridge("daemon", "stop")
        sim.stop()


def daemon_leases(sim: SimHost) -> list[dict[str, Any]]:
    res = sim.ovsbridge("daemon", "status", "--json")
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout)["leases"])


def test_dhcp_uplink_keeps_its_address(dhcp_host: SimHost) -> None:
    sim = dhcp_host
    before = settled_snapshot(sim)
    [(fam, address, plen, _label, flags)] = before["net"]["eth0"]["addresses"]
    assert fam == "inet" and "dynamic" in flags

    res = sim.ovsbridge("setup-bridge", "eth0", "--yes")
    assert res.returncode == 0, res.stderr
    assert "dhcp lease" in res.stdout or "DHCP" in res.stderr

    after = settled_snapshot(sim)["net"]
    assert [(a[0], a[1], a[2]) for a in after["ovsbr0"]["addresses"]] == [(fam, address, plen)]
    assert after["eth0"]["addresses"] == []
    # The server saw the bridge (the uplink's MAC) ask for that same address again.
    log = sim.dhcp_log.read_text()
    acks = [
        line for line in log.splitlines() if f"DHCPACK(lan0) {address} {sim.uplink_mac}" in line
    ]
    assert len(acks) >= 2, log
    held = [(e.get("ifname"), str(e.get("address", ""))) for e in daemon_leases(sim)]
    assert any(ifname == "ovsbr0" and address in addr for ifname, addr in held), held

    down = sim.ovsbridge("teardown-bridge")
    assert down.returncode == 0, down.stderr
    back = settled_snapshot(sim)["net"]
    assert [(a[0], a[1], a[2]) for a in back["eth0"]["addresses"]] == [(fam, address, plen)]
    assert "ovsbr0" not in back
    held = [(e.get("ifname"), str(e.get("address", ""))) for e in daemon_leases(sim)]
    assert [ifname for ifname, _ in held] == ["eth0"], held


def test_enter_in_the_same_terminal_confirms(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    primary, secondary = pty.openpty()
    try:
        cli = sim.ovsbridge_popen(
            "setup-bridge", "eth0", "--confirm-timeout", "120", stdin=secondary
        )
        os.close(secondary)
        secondary = -1
        assert cli.stderr is not None
        seen = []
        while not any("press Enter" in line for line in seen):
            line = cli.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        os.write(primary, b"\n")
        out, rest = cli.communicate(timeout=60)
        err = "".join(seen) + rest
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert cli.returncode == 0, err
    assert "press Enter here" in err
    assert "ovsbridge confirm" in err
    assert "confirmed" in out
    assert port_on(sim, "eth0") == "ovsbr0"
    no_stray_processes(sim)
    assert sim.ovsbridge("teardown-bridge").returncode == 0
    assert settled_snapshot(sim) == before


# ----- end to end: the blog post's flow on the simulated LAN --------------------------------
def test_container_gets_a_lan_address_through_the_bridge(
    lab_session: Any, make_container: Callable[..., Any], netns_exec: Callable[..., Any]
) -> None:
    sim = SimHost(dhcp=True)
    for name in (sim.host_ns, sim.router_ns):
        lab_session.claim(name)
    sim.start()
    try:
        sim.configure_static()
        res = sim.ovsbridge("setup-bridge", "eth0", "--yes")
        assert res.returncode == 0, res.stderr
        web = make_container()
        got = sim.ovsbridge("attach", "ovsbr0", web.name, "dhcp", "--json")
        assert got.returncode == 0, got.stderr
        lease = json.loads(got.stdout)["lease"]
        assert lease["address"].startswith("198.51.100.1"), lease
        ping = netns_exec(web, "ping", "-c", "2", "-W", "3", ROUTER_V4)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert web.name in sim.dhcp_leases.read_text()
        ps = sim.ovsbridge("ps", "--json")
        assert ps.returncode == 0, ps.stderr
        rows = json.loads(ps.stdout)
        assert [r["container_name"] for r in rows if r["owner"] == "ovsbridge"] == [web.name]
        assert sim.ovsbridge("detach", web.name).returncode == 0
        down = sim.ovsbridge("teardown-bridge")
        assert down.returncode == 0, down.stderr
    finally:
        sim.ovsbridge("daemon", "stop")
        sim.stop()


def test_link_local_ipv6_gateway_is_checked_on_the_bridge(static_host: SimHost) -> None:
    sim = static_host

    def router_link_local() -> str | None:
        for entry in sim.ip_json("-6", "addr", "show", "dev", sim.router_if, ns=sim.router_ns):
            for a in entry.get("addr_info", []):
                if a.get("scope") == "link" and not a.get("tentative") and "local" in a:
                    return str(a["local"])
        return None

    wait_for("the router's link-local address", lambda: router_link_local() is not None)
    router_ll = router_link_local()
    assert router_ll is not None
    subprocess.run(
        [
            "ip",
            "-n",
            sim.host_ns,
            "-6",
            "route",
            "replace",
            "default",
            "via",
            router_ll,
            "dev",
            "eth0",
            "metric",
            "50",
        ],
        check=True,
    )
    subprocess.run(
        [
            "ip",
            "-n",
            sim.host_ns,
            "-6",
            "route",
            "del",
            "default",
            "via",
            ROUTER_V6,
            "dev",
            "eth0",
            "metric",
            "50",
        ],
        check=False,
    )
    before = settled_snapshot(sim)
    res = sim.ovsbridge("setup-bridge", "eth0", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    checks = {c["gateway"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks[router_ll]["ok"] and checks[router_ll]["dev"] == "ovsbr0"
    routes = sim.net_state()["ovsbr0"]["routes"]
    assert any(r[3] == router_ll for r in routes), routes
    assert sim.ovsbridge("teardown-bridge").returncode == 0
    assert settled_snapshot(sim) == before


def test_ctrl_c_at_the_prompt_rolls_back_now(static_host: SimHost) -> None:
    sim = static_host
    before = settled_snapshot(sim)
    cli = sim.ovsbridge_popen("setup-bridge", "eth0", "--confirm-timeout", "600")
    assert cli.stderr is not None
    seen = []
    while not any("ovsbridge confirm" in line for line in seen):
        line = cli.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    cli.send_signal(signal.SIGINT)
    _, rest = cli.communicate(timeout=60)
    assert cli.returncode == 1, "".join(seen) + rest
    assert "interrupted at the confirmation prompt" in rest
    assert settled_snapshot(sim) == before
    no_stray_processes(sim)


def test_ssh_session_closed_then_confirmed_from_a_new_shell(static_host: SimHost) -> None:
    """The terminal goes away (SIGHUP kills the CLI); the watchdog keeps waiting, and a new
    login confirms."""
    sim = static_host
    cli = sim.ovsbridge_popen("setup-bridge", "eth0", "--confirm-timeout", "120")
    assert cli.stderr is not None
    seen = []
    while not any("ovsbridge confirm" in line for line in seen):
        line = cli.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    cli.send_signal(signal.SIGHUP)
    cli.wait(timeout=10)
    assert cli.returncode == -signal.SIGHUP
    res = sim.ovsbridge("confirm", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [
        {"bridge": "ovsbr0", "outcome": "confirmed", "reason": "confirmed", "problems": []}
    ]
    no_stray_processes(sim)
    assert port_on(sim, "eth0") == "ovsbr0" and not sim.addresses("eth0")
    assert sim.ovsbridge("teardown-bridge").returncode == 0
