"""``dhcp,dhcp6`` and ``dhcp,slaac`` end to end inside a simulated host (tests/lab/simhost.py):
the real CLI and daemon run in a host netns with its own private OVS, dnsmasq in the router
netns sends RAs and serves DHCPv4 + DHCPv6, guests are named netns.

NOTE: the same flows exist with containers on the machine's OVS (test_attach_ipv6.py); this
copy is immune to other test runs on a shared machine, whose daemons' start-up sweeps see the
machine's links and take an attachment still "building" (its lock lives in another run dir)
for the leftover of a killed run.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.shell import run
from lab.simhost import SimHost

pytestmark = pytest.mark.lab

ROUTER6 = "2001:db8:1::1"
V6NET = ipaddress.ip_network("2001:db8:1::/64")


@pytest.fixture
def sim(lab_session: Any) -> Iterator[SimHost]:
    host = SimHost()
    for name in (host.host_ns, host.router_ns):
        lab_session.claim(name)
    host.start()
    try:
        yield host
    finally:
        host.stop()


def lan(sim: SimHost, spawn, dhcp6_range: str, extra: tuple[str, ...] = ()
        ) -> tuple[str, Path]:
    """A netdev bridge in the sim host with its uplink, dnsmasq (v4 + v6 + RA) upstream."""
    bridge = "br6"
    sim.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
    sim.vsctl("add-port", bridge, sim.uplink)
    run(["ip", "-n", sim.host_ns, "link", "set", bridge, "up"])
    assert sim.tmpdir is not None
    log = sim.tmpdir / "dnsmasq6.log"
    spawn(sim.router_ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
          "--port=0", "--no-resolv", "--no-hosts", "--user=root",
          f"--interface={sim.router_if}", "--bind-interfaces", "--dhcp-authoritative",
          "--dhcp-range=198.51.100.100,198.51.100.199,255.255.255.0,2m",
          "--dhcp-option=option:router,198.51.100.1",
          "--dhcp-option=option:dns-server,198.51.100.1",
          f"--dhcp-range={dhcp6_range}", "--enable-ra", f"--ra-param={sim.router_if},10,600",
          f"--dhcp-option=option6:dns-server,[{ROUTER6}]",
          "--dhcp-option=option6:domain-search,v6.lab.test",
          f"--dhcp-leasefile={sim.tmpdir / 'leases6'}", "--log-dhcp",
          f"--log-facility={log}", *extra)
    for _ in range(100):
        if log.exists() and "router advertisement" in log.read_text():
            break
        time.sleep(0.1)
    return bridge, log


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def daemon_pid(sim: SimHost) -> int | None:
    assert sim.tmpdir is not None
    try:
        return int((sim.tmpdir / "run" / "daemon.lock").read_text().strip())
    except (OSError, ValueError):
        return None


def test_dhcp_dhcp6_lease_renewed_released_and_kept_over_a_daemon_kill(
        sim, spawn, make_netns, netns_exec) -> None:
    bridge, log = lan(sim, spawn, "2001:db8:1::100,2001:db8:1::1ff,64,2m")
    guest = make_netns()
    result = json.loads(ok(sim.ovsbridge("attach", bridge, f"netns:{guest}", "dhcp,dhcp6",
                                         "--json")).stdout)
    v4, v6 = result["lease"]["address"], result["lease6"]["address"]
    ip6 = str(ipaddress.ip_interface(v6).ip)
    assert ipaddress.ip_interface(v6).ip in V6NET
    assert result["addresses"] == [v4, v6]
    assert result["slaac"]["router"].startswith("fe80:")  # the RA's default route
    ping = netns_exec(guest, "busybox", "ping", "-6", "-c", "2", "-W", "3", ROUTER6)
    assert ping.returncode == 0, ping.stdout
    rows = json.loads(ok(sim.ovsbridge("ps", "--json")).stdout)
    [row] = [r for r in rows if r["container_id"] == guest]
    assert {a["address"]: a["origin"] for a in row["address_details"]} == {
        v4: "dhcp", v6: "dhcp6"}
    status = json.loads(ok(sim.ovsbridge("daemon", "status", "--json")).stdout)
    assert sorted(item["family"] for item in status["leases"]) == [4, 6]

    # the daemon is SIGKILLed; the next one resumes with a REBIND for the same address
    pid = daemon_pid(sim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the daemon this test's CLI started, by its PID
    wait_for(lambda: not Path(f"/proc/{pid}").exists()
             or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], 10, "the kill")
    # NOTE: a CLI inside a named netns never starts a daemon by itself; start one here
    # (stopped with the sim host, which kills what runs in its netns)
    assert sim.tmpdir is not None
    second_log = (sim.tmpdir / "daemon2.log").open("w")
    # NOTE: OVSBRIDGE_DB too: main's start-up sweep reads OVSDB from that variable only, and
    # with the machine's OVSDB it took this sim host's veth for a leftover (lead: fix there)
    sim.ovsbridge_popen("daemon", "run", stdout=subprocess.DEVNULL, stderr=second_log,
                        env={"OVSBRIDGE_DB": sim.db})
    wait_for(lambda: "DHCPREBIND(lan0)" in log.read_text(), 40, "the REBIND after restart")
    shown = netns_exec(guest, "ip", "-6", "addr", "show", "eth1").stdout
    assert ip6 in shown, (sim.tmpdir / "daemon2.log").read_text()[-3000:]

    # a renewal at T1 (dnsmasq's shortest lease, 2 min: T1 at 60 s)
    try:
        wait_for(lambda: "DHCPRENEW(lan0)" in log.read_text(), 100, "the DHCPv6 RENEW at T1")
    except AssertionError:
        assert sim.tmpdir is not None
        daemon_log = (sim.tmpdir / "daemon2.log").read_text()[-3000:]
        raise AssertionError(f"no RENEW; dnsmasq: {log.read_text()[-2500:]}\n"
                             f"daemon: {daemon_log}") from None

    ok(sim.ovsbridge("detach", f"netns:{guest}"))
    wait_for(lambda: "DHCPRELEASE(lan0)" in log.read_text(), 15, "the DHCPv6 RELEASE")
    again = json.loads(ok(sim.ovsbridge("attach", bridge, f"netns:{guest}", "dhcp,dhcp6",
                                        "--json")).stdout)
    assert again["lease6"]["address"] == v6  # DUID-LL from the stable MAC
    ok(sim.ovsbridge("detach", f"netns:{guest}"))


def test_dhcp_slaac_gives_both_families_with_rdnss(sim, spawn, make_netns,
                                                    netns_exec) -> None:
    bridge, _ = lan(sim, spawn, "2001:db8:1::,ra-only")
    guest = make_netns()
    result = json.loads(ok(sim.ovsbridge("attach", bridge, f"netns:{guest}", "dhcp,slaac",
                                         "--json")).stdout)
    slaac = result["slaac"]
    assert slaac["addresses"] and all(
        ipaddress.ip_interface(a).network == V6NET for a in slaac["addresses"])
    assert slaac["router"].startswith("fe80:") and slaac["dns"] == [ROUTER6]
    assert "v6.lab.test" in slaac["search"]
    route = netns_exec(guest, "ip", "-6", "route", "show", "default").stdout
    assert "via fe80:" in route
    ping = netns_exec(guest, "busybox", "ping", "-6", "-c", "2", "-W", "3", ROUTER6)
    assert ping.returncode == 0, ping.stdout
    ok(sim.ovsbridge("detach", f"netns:{guest}"))


def test_dhcp_option_26_sets_both_veth_ends_and_121_routes_apply(sim, spawn, make_netns,
                                                                  netns_exec) -> None:
    bridge, _ = lan(sim, spawn, "2001:db8:1::,ra-only", (
        "--dhcp-option=26,1400",
        "--dhcp-option=121,203.0.113.0/24,198.51.100.2,0.0.0.0/0,198.51.100.1"))
    guest = make_netns()
    result = json.loads(ok(sim.ovsbridge("attach", bridge, f"netns:{guest}", "dhcp",
                                         "--json")).stdout)
    assert result["lease"]["mtu"] == 1400 and result["mtu"] == 1400
    assert "mtu 1400" in netns_exec(guest, "ip", "link", "show", "eth1").stdout
    host_end = sim.run_in_host(["ip", "link", "show", result["port"]]).stdout
    assert "mtu 1400" in host_end
    routes = netns_exec(guest, "ip", "route").stdout
    assert "default via 198.51.100.1" in routes and "203.0.113.0/24 via 198.51.100.2" in routes
    ok(sim.ovsbridge("detach", f"netns:{guest}"))


def test_dhcp_on_a_tagged_port(sim, spawn, make_netns, netns_exec) -> None:
    bridge, _ = lan(sim, spawn, "2001:db8:1::,ra-only")
    sim.vsctl("set", "port", sim.uplink, "tag=10")  # the LAN is VLAN 10 on this bridge
    guest = make_netns()
    result = json.loads(ok(sim.ovsbridge("attach", bridge, f"netns:{guest}", "dhcp",
                                         "--vlan", "10", "--json")).stdout)
    assert result["vlan"] == 10 and result["lease"]["address"].startswith("198.51.100.1")
    ping = netns_exec(guest, "busybox", "ping", "-c", "2", "-W", "2", "198.51.100.1")
    assert ping.returncode == 0, ping.stdout
    other = make_netns()
    untagged = sim.ovsbridge("attach", bridge, f"netns:{other}", "dhcp", "--dhcp-timeout", "6")
    assert untagged.returncode == 1  # no DHCP server outside VLAN 10
    ok(sim.ovsbridge("detach", f"netns:{guest}"))


def test_slaac_without_a_router_fails_within_ra_timeout_and_leaves_nothing(
        sim, make_netns) -> None:
    bridge = "br6"
    sim.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
    guest = make_netns()
    before = sim.vsctl("list-ports", bridge).stdout
    result = sim.ovsbridge("attach", bridge, f"netns:{guest}", "slaac", "--ra-timeout", "3")
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "within 3 s" in line
    assert sim.vsctl("list-ports", bridge).stdout == before
    links = run(["ip", "-n", guest, "-o", "link"]).stdout
    assert "eth1" not in links
