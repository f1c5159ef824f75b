"""Port features end to end on the real lab: trunk ports with VLAN subinterfaces inside the
container, native VLAN, DHCP on a tagged port, ingress rate limits measured with a bulk TCP
transfer (busybox nc), and ``ovsbridge set`` changing a live port (same ifindex)."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import time

import pytest
from lab.shell import run

from ovsbridge.system.nsthread import run_in_netns

pytestmark = pytest.mark.lab


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def ns(box, *argv: str) -> str:
    return run(["nsenter", f"--net={box.netns_path}", "--", *argv]).stdout


def tagged_arp(box, vid: int, src_ip: str, target_ip: str, timeout: float = 2.0) -> bool:
    """Does TARGET_IP answer an ARP request sent from BOX's eth1 tagged with VLAN VID?

    NOTE: the lab kernel has no 8021q module (no VLAN subinterfaces, no bridge VLAN
    filtering), so the container speaks 802.1Q itself: a raw tagged frame out, and the
    reply's VLAN read from PACKET_AUXDATA (veth strips the tag into metadata on receive).
    """
    def body() -> bool:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as probe:
            probe.bind(("eth1", 0))
            mac = probe.getsockname()[4]
        frame = (b"\xff" * 6 + mac + struct.pack("!HH", 0x8100, vid) + struct.pack("!H", 0x0806)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac
                 + ipaddress.ip_address(src_ip).packed + b"\x00" * 6
                 + ipaddress.ip_address(target_ip).packed)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as sock:
            sock.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
            sock.bind(("eth1", 0))
            sock.settimeout(0.2)
            deadline = time.monotonic() + timeout
            sock.send(frame)
            while time.monotonic() < deadline:
                try:
                    data, anc, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(20))
                except TimeoutError:
                    continue
                tag = None
                for level, kind, cdata in anc:
                    if (level, kind) == (263, 8) and len(cdata) >= 20:
                        status, _, _, _, _, tci = struct.unpack_from("=IIIHHH", cdata)
                        if status & (1 << 4):  # TP_STATUS_VLAN_VALID
                            tag = tci & 0xFFF
                if data[12:14] == b"\x81\x00":
                    tag, data = struct.unpack_from("!H", data, 14)[0] & 0xFFF, \
                        data[:12] + data[16:]
                if data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02" \
                        and data[28:32] == ipaddress.ip_address(target_ip).packed:
                    return tag == vid
        return False

    return run_in_netns(box.netns_path, body)


def ifindex(box) -> str:
    return ns(box, "ip", "-o", "link", "show", "eth1").split(":")[0]


def pings(netns_exec, box, target: str) -> bool:
    return netns_exec(box, "busybox", "ping", "-c", "3", "-W", "2", target).returncode == 0


def port_row(ovsbridge, bridge: str, box) -> dict:
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    [row] = [r for r in rows if r["container_id"] == box.id]
    return row


def test_trunk_reaches_access_ports_10_and_20_and_nothing_else(
        bridge, home, make_container, ovsbridge, netns_exec):
    a, b, c, trunk = (make_container() for _ in range(4))
    ok(ovsbridge("attach", bridge, a.name, "198.51.100.10/24", "--vlan", "10"))
    ok(ovsbridge("attach", bridge, b.name, "203.0.113.20/25", "--vlan", "20"))
    ok(ovsbridge("attach", bridge, c.name, "203.0.113.130/25", "--vlan", "30"))
    ok(ovsbridge("attach", bridge, trunk.name, "none", "--trunk", "10,20"))

    assert tagged_arp(trunk, 10, "198.51.100.1", "198.51.100.10")
    assert tagged_arp(trunk, 20, "203.0.113.1", "203.0.113.20")
    assert not tagged_arp(trunk, 30, "203.0.113.129", "203.0.113.130")  # not on the trunk
    assert not tagged_arp(trunk, 20, "198.51.100.1", "198.51.100.10")  # A is on 10 only
    row = port_row(ovsbridge, bridge, trunk)
    assert (row["vlan_mode"], row["trunks"], row["vlan"]) == ("trunk", [10, 20], None)
    assert port_row(ovsbridge, bridge, a)["vlan_mode"] == "access"

    # set: VLAN 30 joins the trunk live, the veth stays (same ifindex)
    before = ifindex(trunk)
    ok(ovsbridge("set", trunk.name, "--trunk", "10,20,30"))
    assert ifindex(trunk) == before
    assert tagged_arp(trunk, 30, "203.0.113.129", "203.0.113.130")
    assert port_row(ovsbridge, bridge, trunk)["trunks"] == [10, 20, 30]
    again = ok(ovsbridge("attach", bridge, trunk.name, "none", "--trunk", "10,20,30"))
    assert "already attached" in again.stdout  # the recorded config is the new one


def test_native_vlan_is_untagged(bridge, home, make_container, ovsbridge, netns_exec):
    a, b, native = (make_container() for _ in range(3))
    ok(ovsbridge("attach", bridge, a.name, "198.51.100.10/24", "--vlan", "10"))
    ok(ovsbridge("attach", bridge, b.name, "203.0.113.20/25", "--vlan", "20"))
    ok(ovsbridge("attach", bridge, native.name, "198.51.100.40/24", "--vlan", "10",
                 "--trunk", "20"))
    assert pings(netns_exec, native, "198.51.100.10")  # untagged = native VLAN 10
    assert tagged_arp(native, 20, "203.0.113.2", "203.0.113.20")  # tagged 20
    assert not tagged_arp(native, 30, "203.0.113.2", "203.0.113.20")
    row = port_row(ovsbridge, bridge, native)
    assert (row["vlan_mode"], row["vlan"], row["trunks"]) == ("native-untagged", 10, [20])



def _transfer_mbps(netns_exec, spawn, sender, receiver, ip: str, megabytes: int) -> float:
    """RECEIVER downloads MEGABYTES from busybox httpd in SENDER: Mbit/s as received.

    NOTE: timed at the receiver (wget ends when the last byte arrived). busybox nc is no
    good here: the sending nc exits while its socket buffer still holds megabytes, and the
    listening one quits on EOF of its own stdin.
    """
    netns_exec(sender, "sh", "-c", f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob "
               f"bs=65536 count={megabytes * 16} 2>/dev/null")
    spawn(sender, "busybox", "httpd", "-f", "-p", "8080", "-h", "/tmp/www")
    time.sleep(0.5)
    started = time.monotonic()
    got = netns_exec(receiver, "sh", "-c",
                     f"busybox wget -q -O - http://{ip}:8080/blob | wc -c", timeout=300)
    elapsed = time.monotonic() - started
    size = int(got.stdout.strip() or 0)
    assert size == megabytes * 16 * 65536, f"received {size} bytes: {got.stderr}"
    return size * 8 / 1e6 / elapsed


def test_rate_limit_shapes_the_port_and_set_changes_it_live(
        bridge, home, make_container, ovsbridge, netns_exec, spawn, capsys):
    limited, peer = make_container(), make_container()
    ok(ovsbridge("attach", bridge, limited.name, "198.51.100.10/24", "--rate-limit", "10"))
    ok(ovsbridge("attach", bridge, peer.name, "198.51.100.11/24"))
    row = port_row(ovsbridge, bridge, limited)
    assert (row["rate_limit"], row["burst"]) == (10, 125)
    index_before = ifindex(limited)

    # towards the container (OVS egress: the htb QoS), and from it (ingress policing)
    down = _transfer_mbps(netns_exec, spawn, peer, limited, "198.51.100.11", 8)
    up = _transfer_mbps(netns_exec, spawn, limited, peer, "198.51.100.10", 16)
    ok(ovsbridge("set", limited.name, "--rate-limit", "40", "--burst", "500"))
    assert ifindex(limited) == index_before
    row = port_row(ovsbridge, bridge, limited)
    assert (row["rate_limit"], row["burst"]) == (40, 500)
    down40 = _transfer_mbps(netns_exec, spawn, peer, limited, "198.51.100.11", 24)
    ok(ovsbridge("set", limited.name, "--rate-limit", "none"))
    assert port_row(ovsbridge, bridge, limited)["rate_limit"] is None
    free = _transfer_mbps(netns_exec, spawn, peer, limited, "198.51.100.11", 48)
    with capsys.disabled():
        print(f"\n[rate-limit netdev] limit 10: to the container {down:.1f} Mbit/s, from it "
              f"{up:.1f}; limit 40: to it {down40:.1f}; no limit: {free:.1f}")
    assert down <= 10 * 1.2  # measured, loosely: figures in the report
    assert 10 * 1.2 < down40 <= 40 * 1.2
    assert free > down40


def test_set_bad_input_exits_2_and_changes_nothing(bridge, home, make_container, ovsbridge):
    box = make_container()
    ok(ovsbridge("attach", bridge, box.name, "none", "--vlan", "10"))
    before = port_row(ovsbridge, bridge, box)
    for args, needle in ((["--trunk", "0"], "out of range"),
                         (["--rate-limit", "x"], "not a whole number"),
                         (["--vlan", "5000"], "out of range"),
                         ([], "nothing to change"),
                         (["--burst", "10"], "needs --rate-limit")):
        result = ovsbridge("set", box.name, *args)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and needle in line, line
    missing = ovsbridge("set", box.name, "--ifname", "eth7", "--vlan", "3")
    assert missing.returncode == 3
    assert port_row(ovsbridge, bridge, box) == before
