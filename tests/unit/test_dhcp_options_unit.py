"""DHCPv4 option decoders (121/249, 119), the ARP conflict test of RFC 5227, and the
resolv.conf that several of our sources share."""

from __future__ import annotations

from ipaddress import IPv4Address

from ovsbridge.system import dhcp, resolvconf

MAC = "02:aa:bb:cc:dd:01"


def test_classless_routes_decode_rfc3442_examples() -> None:
    # RFC 3442 section 3 encodings: 0/0, 10.0.0.0/8, 10.17.0.0/16, 10.27.129.0/24, on-link /32
    data = bytes(
        [0, 203, 0, 113, 1]
        + [8, 10, 203, 0, 113, 2]
        + [16, 10, 17, 203, 0, 113, 3]
        + [24, 10, 27, 129, 203, 0, 113, 4]
        + [32, 198, 51, 100, 77, 0, 0, 0, 0]
    )
    assert dhcp.parse_classless_routes(data) == (
        ("0.0.0.0/0", "203.0.113.1"),
        ("10.0.0.0/8", "203.0.113.2"),
        ("10.17.0.0/16", "203.0.113.3"),
        ("10.27.129.0/24", "203.0.113.4"),
        ("198.51.100.77/32", "0.0.0.0"),
    )


def test_malformed_classless_routes_are_ignored_whole() -> None:
    assert dhcp.parse_classless_routes(bytes([33, 1, 2, 3, 4, 5, 6, 7, 8])) == ()
    assert dhcp.parse_classless_routes(bytes([24, 10, 0, 0, 203, 0])) == ()


def test_domain_list_with_compression_pointers() -> None:
    # RFC 3397 section 2 example: eng.apple.com, marketing.apple.com (pointer to apple.com)
    data = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert dhcp.decode_domain_list(data) == ("eng.apple.com", "marketing.apple.com")
    assert dhcp.decode_domain_list(b"\x03lab\x04test\x00\x03two\x04test\x00",
                                   compression=False) == ("lab.test", "two.test")
    assert dhcp.decode_domain_list(b"\xc0\x00") == ()  # a pointer loop ends, no hang


def test_arp_conflict_sees_a_holder_and_a_rival_probe_but_not_us() -> None:
    ip = IPv4Address("203.0.113.150")
    probe = dhcp.arp_probe_frame(MAC, ip)
    assert dhcp.arp_conflict(probe, MAC, ip) is None  # our own probe
    rival = dhcp.arp_probe_frame("02:00:00:00:00:99", ip)
    assert dhcp.arp_conflict(rival, MAC, ip) == "02:00:00:00:00:99"
    holder_mac = bytes.fromhex("020000000077")
    reply = (bytes.fromhex(MAC.replace(":", "")) + holder_mac + b"\x08\x06"
             + bytes.fromhex("0001080006040002") + holder_mac + ip.packed
             + bytes.fromhex(MAC.replace(":", "")) + b"\x00" * 4)
    assert dhcp.arp_conflict(reply, MAC, ip) == "02:00:00:00:00:77"
    other = reply[:28] + IPv4Address("203.0.113.9").packed + reply[32:]
    assert dhcp.arp_conflict(other, MAC, ip) is None


def test_backoff_follows_rfc2131() -> None:
    delays = [d for _, d in zip(range(7), dhcp._backoff(), strict=False)]
    for got, base in zip(delays, (4, 8, 16, 32, 64, 64, 64), strict=True):
        assert base - 1 <= got <= base + 1


def test_resolv_conf_keeps_each_source() -> None:
    old = "# docker\nnameserver 198.51.100.253\noptions ndots:2\n"
    one = resolvconf.render(old, "dhcp4", ["203.0.113.1"], ["lab.test"])
    both = resolvconf.render(one, "dhcp6", ["2001:db8:1::1"], ["v6.lab.test"])
    lines = both.splitlines()
    assert "search lab.test v6.lab.test" in lines
    assert [x for x in lines if x.startswith("nameserver")] == [
        "nameserver 203.0.113.1", "nameserver 2001:db8:1::1"]
    assert "options ndots:2" in lines and "# docker" in lines
    assert "198.51.100.253" not in both
    # a DHCPv4 renewal with new servers keeps DHCPv6's
    again = resolvconf.render(both, "dhcp4", ["203.0.113.2"], ["lab.test"])
    assert "nameserver 2001:db8:1::1" in again and "nameserver 203.0.113.1" not in again
    assert resolvconf.render(again, "dhcp4", ["203.0.113.2"], ["lab.test"]) == again
    gone = resolvconf.render(again, "dhcp6", [], [])
    assert "2001:db8" not in gone and "nameserver 203.0.113.2" in gone


def test_resolv_conf_refuses_what_a_hostile_server_could_inject() -> None:
    text = resolvconf.render("", "dhcp6", ["2001:db8::1", "evil\noptions x"],
                             ["ok.test", "bad name", "x\nnameserver 6.6.6.6", "-lead.test"])
    assert "nameserver 2001:db8::1" in text and "6.6.6.6" not in text
    assert "search ok.test" in text.splitlines() and "bad" not in text and "options" not in text
