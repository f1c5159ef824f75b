"""Hostile input through the real CLI (issue 9, behaviours 10 and 11): every case exits 2 with
exactly one stderr line naming the value and the fix, and leaves nothing behind (no veth, no
port, no bridge, nothing changed in the container). tests/integration/test_attach.py has the
older bad-input table; the cases here are new. Also: a link-local IPv6 gateway without a zone
works end to end (default via fe80::1 dev IFNAME, no host route)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from lab.shell import run
from lab.snapshots import netns_state, ovs_bridges, ovs_ports, root_links

from ovsbridge import naming

pytestmark = pytest.mark.lab


def candidates(container_id: str) -> set[str]:
    """Every root-netns name one of the cases below could have made (other test runs on this
    machine make ovb* links of their own, so only these are compared)."""
    names = {"ovs-system", "ovs-netdev", "-x"}
    for ifname in ("eth1", "-rf", "all", "eth1\n"):
        host = naming.host_ifname(container_id, ifname)
        names |= {host, naming.peer_tmp_ifname(host)}
    return names


def hostile_cases(bridge: str, box: str) -> list[tuple[list[str], str]]:
    """(argv, a fragment of the one error line); every one exits 2."""
    a = ["attach", bridge, box]
    return [
        (a + ["198.51.100.5/24@255.255.255.255"], "limited broadcast"),
        (a + ["198.51.100.5/24@198.51.100.0"], "network address of 198.51.100.0/24"),
        (a + ["198.51.100.5/24@198.51.100.255"], "broadcast address of 198.51.100.0/24"),
        (a + ["198.51.100.5/24@240.0.0.1"], "240.0.0.0/4"),
        (a + ["255.255.255.255/32"], "limited broadcast"),
        (a + ["240.0.0.1/24"], "240.0.0.0/4"),
        (a + ["0.1.2.3/8"], "0.0.0.0/8"),
        (a + ["2001:db8::5%eth1/64"], "has a zone"),
        (a + ["::ffff:198.51.100.7/128"], "IPv4-mapped"),
        (a + ["198.51.100.5/24,::ffff:198.51.100.7/120"], "IPv4-mapped"),
        (a + ["2001:db8::5/64@fe80::1%eth1"], 'gateway "fe80::1%eth1" has a zone'),
        (a + ["198.51.100.7/24,198.51.100.7/16"], "given twice"),
        (a + ["2001:db8::5/64,2001:DB8::5/128"], "given twice"),
        (a + ["198.51.100.5/\u0662\u0664"], "not a number"),
        (a + ["198.51.100.5/\u00b2"], "not a number"),
        (a + ["198.51.100.5/24\x1b[2J"], "not a number"),
        (a + ["none", "--ifname", "-rf"], 'starts with "-"'),
        (a + ["none", "--ifname=-rf"], 'starts with "-"'),
        (a + ["none", "--ifname", "all"], "reserved"),
        (a + ["none", "--ifname", "eth1\n"], "characters Linux does not allow"),
        (a + ["none", "--host-ifname", "ovs-system"], "reserved"),
        (a + ["none", "--host-ifname", "ovs-netdev"], "reserved"),
        (a + ["none", "--host-ifname", "-x"], 'starts with "-"'),
        (a + ["none", "--mac", "02:42:c6:33:64:12\n"], "malformed"),
        (["attach", "ovs-system", box, "none"], "reserved"),
        (["attach", "ovs-netdev", box, "none", "--create-bridge"], "reserved"),
        (["attach", bridge, "web1/../../images", "none"], "not a valid Docker name"),
        (["attach", bridge, "netns:a\nb", "none"], "invalid"),
        (["attach", bridge, "pid:\u00b2", "none"], "not a process id"),
        (["detach", box, "--ifname", "-rf"], 'starts with "-"'),
        (["detach", "-", "--all"], "not a valid Docker name"),
    ]


def snapshot(bridge: str, box: Any) -> Any:
    reserved = {"ovs-system", "ovs-netdev"}
    return (root_links() & candidates(box.id), ovs_ports(bridge), ovs_bridges() & reserved,
            netns_state(box.pid))


def test_hostile_input_exits_2_with_one_line_and_leaves_nothing(
    bridge, make_container, ovsbridge
):
    box = make_container()
    cases = hostile_cases(bridge, box.name)
    before = snapshot(bridge, box)
    for argv, fragment in cases:
        result = ovsbridge(*argv)
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (argv, result.returncode, result.stderr)
        assert len(lines) == 1, (argv, result.stderr)
        line = lines[0]
        assert line.startswith("error: ") and "; hint: " in line, (argv, line)
        assert fragment in line, (argv, line)
        assert line.isprintable(), (argv, line)  # no terminal escape gets through
        assert result.stdout == "", (argv, result.stdout)
    assert snapshot(bridge, box) == before


def test_hostile_input_as_json_is_one_json_line(bridge, make_container, ovsbridge):
    box = make_container()
    for argv, fragment in hostile_cases(bridge, box.name)[:8]:
        result = ovsbridge("--json", *argv)
        assert result.returncode == 2 and result.stdout == "", (argv, result.stderr)
        [line] = result.stderr.splitlines()
        error = json.loads(line)
        assert error["error"] == "bad-input" and error["exit_code"] == 2
        assert fragment in error["message"] and error["hint"]


def test_reserved_name_for_the_bridge_end_is_never_created(bridge, make_container, ovsbridge):
    """Behaviour 10: --host-ifname ovs-system was accepted and its port sat in error."""
    box = make_container()
    result = ovsbridge("attach", bridge, box.name, "none", "--host-ifname", "ovs-system")
    assert result.returncode == 2, result.stderr
    ports = ovs_ports(bridge)
    assert "ovs-system" not in ports and ports == set()


def _wait_ping(netns_exec: Any, target: Any, address: str, tries: int = 20) -> bool:
    for _ in range(tries):
        argv = ["busybox", "ping", "-6", "-c", "1", "-W", "1", address]
        if netns_exec(target, *argv).returncode == 0:
            return True
        time.sleep(0.5)  # DAD of the fresh addresses
    return False


def test_link_local_ipv6_gateway_without_zone_works_end_to_end(
    bridge, make_container, make_netns, connect_netns, ovsbridge, netns_exec
):
    # a router on the LAN that is only reachable by its link-local address, serving
    # 2001:db8:1::1 behind it
    router = make_netns()
    connect_netns(bridge, router, ifname="lan0")
    run(["ip", "-n", router, "addr", "add", "fe80::1/64", "dev", "lan0", "nodad"])
    run(["ip", "-n", router, "addr", "add", "2001:db8:1::1/128", "dev", "lo"])
    run(["ip", "-n", router, "-6", "route", "add", "2001:db8::/64", "dev", "lan0"])

    box = make_container()
    result = ovsbridge("attach", bridge, box.name, "2001:db8::5/64@fe80::1")
    assert result.returncode == 0, result.stderr
    routes = netns_exec(box, "ip", "-6", "route").stdout
    assert "default via fe80::1 dev eth1" in routes, routes
    assert "fe80::1 dev eth1" not in routes.replace("default via fe80::1 dev eth1", ""), routes
    assert _wait_ping(netns_exec, box, "2001:db8:1::1"), routes
    detach = ovsbridge("detach", box.name)
    assert detach.returncode == 0, detach.stderr


def test_a_domain_with_a_newline_from_a_real_dnsmasq_adds_no_line_to_resolv_conf(
    bridge, dhcp_server, home, make_container, ovsbridge, netns_exec
):
    # dnsmasq sends the option-15 text as given on its command line, newline included
    evil = "lab.test\nnameserver 198.51.100.66"
    lan = dhcp_server(bridge, router="198.51.100.1", dns="198.51.100.53", domain=evil)
    box = make_container()
    result = ovsbridge("attach", bridge, box.name, "dhcp", "--dhcp-timeout", "20",
                       "--no-daemon")
    assert result.returncode == 0, result.stderr
    # the server really sent it, and it was dropped as data
    assert "ignoring domain name 'lab.test\\nnameserver 198.51.100.66'" in result.stderr, (
        result.stderr)
    resolv = netns_exec(box, "cat", "/etc/resolv.conf").stdout
    assert "198.51.100.66" not in resolv and "lab.test" not in resolv, resolv
    assert "nameserver 198.51.100.53" in resolv, resolv
    assert any("DHCPACK" in line for line in lan.log().splitlines())
    assert ovsbridge("detach", box.name).returncode == 0


def test_a_hostile_hostname_is_refused_and_leaves_nothing(
    bridge, dhcp_server, home, make_container, ovsbridge
):
    dhcp_server(bridge, router="198.51.100.1")
    box = make_container()
    before = snapshot(bridge, box)
    for hostname in ("web1\nevil", "-web", "a" * 64, "web_1"):
        result = ovsbridge("attach", bridge, box.name, "dhcp", "--hostname", hostname,
                           "--dhcp-timeout", "5")
        if result.returncode == 0:  # accepted: undo it before failing
            ovsbridge("detach", box.name)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1, (hostname, result.stderr)
        assert "not a valid hostname" in lines[0] and lines[0].isprintable(), lines
    assert snapshot(bridge, box) == before
