"""Hostile input to the parsers of model.py (issue 9, behaviours 10 and 11): each is refused
with BadInput (exit 2) whose one-line message names the value and whose hint gives the fix."""

from __future__ import annotations

import ipaddress

import pytest

from ovsbridge.errors import BadInput
from ovsbridge.model import parse_address_plan, parse_guest, parse_ifname, parse_mac, parse_static

REFUSED_ADDRESSES = [
    # (ADDRESS, a fragment of the message, a fragment of the hint)
    ("198.51.100.5/24@255.255.255.255", "limited broadcast", "router"),
    ("198.51.100.5/24@198.51.100.0", "network address of 198.51.100.0/24", "router"),
    ("198.51.100.5/24@198.51.100.255", "broadcast address of 198.51.100.0/24", "router"),
    ("198.51.100.5/24@240.0.0.1", "240.0.0.0/4", "router"),
    ("198.51.100.5/24@0.0.0.1", "0.0.0.0/8", "router"),
    ("255.255.255.255/32", "limited broadcast", "unicast"),
    ("240.0.0.1/24", "240.0.0.0/4", "unicast"),
    ("250.1.2.3/8", "240.0.0.0/4", "unicast"),
    ("0.1.2.3/8", "0.0.0.0/8", "unicast"),
    ("2001:db8::5%eth1/64", "has a zone", "drop the %ZONE"),
    ("2001:db8::5%/64", "has a zone", "drop the %ZONE"),
    ("::ffff:198.51.100.7/128", "IPv4-mapped", "198.51.100.7/32"),
    ("::ffff:198.51.100.7/120", "IPv4-mapped", "198.51.100.7/24"),
    ("2001:db8::5/64@::ffff:198.51.100.1", "IPv4-mapped", "198.51.100.1"),
    ("2001:db8::5/64@fe80::1%eth1", 'gateway "fe80::1%eth1" has a zone', "write @fe80::1"),
    ("2001:db8::5/64@2001:db8::1%1", "has a zone", "reached on the attached interface"),
    ("198.51.100.5/\u0662\u0664", "not a number", "prefix length"),  # Arabic-Indic 24
    ("198.51.100.5/\u00b2", "not a number", "prefix length"),  # superscript two
    ("198.51.100.5/+24", "not a number", "prefix length"),
    ("198.51.100.5/ 24", "not a number", "prefix length"),
    ("198.51.100.5/99999999999999999999", "out of range", "1-32"),
    ("198.51.100.5/24@198.51.100.1\x1b[31m", "not an IP address", "IP/PREFIX@GATEWAY"),
]


@pytest.mark.parametrize("text,message,hint", REFUSED_ADDRESSES)
def test_hostile_addresses_are_refused_with_a_named_value_and_a_fix(
    text: str, message: str, hint: str
) -> None:
    with pytest.raises(BadInput) as caught:
        parse_address_plan(text)
    err = caught.value
    assert message in err.message and err.hint and hint in err.hint, (err.message, err.hint)
    assert "\n" not in err.message and "\x1b" not in err.message


def test_link_local_ipv6_gateway_without_zone_is_accepted_and_on_link() -> None:
    item = parse_static("2001:db8::5/64@fe80::1")
    assert item.gateway == ipaddress.ip_address("fe80::1")
    assert item.gateway_on_link  # no host route: fe80::/64 is on every link


def test_off_subnet_ipv4_gateway_still_needs_a_host_route() -> None:
    assert not parse_static("198.51.100.5/32@203.0.113.1").gateway_on_link
    assert parse_static("198.51.100.5/24@198.51.100.1").gateway_on_link


@pytest.mark.parametrize("text", ["198.51.100.0/31@198.51.100.1", "198.51.100.7/32"])
def test_point_to_point_and_host_prefixes_stay_allowed(text: str) -> None:
    assert str(parse_static(text)) == text


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("-rf", 'starts with "-"'),
        ("-", 'starts with "-"'),
        ("--help", 'starts with "-"'),
        ("ovs-system", "reserved"),
        ("ovs-netdev", "reserved"),
        ("all", "reserved"),
        ("default", "reserved"),
        ("eth1\n", "characters Linux does not allow"),
        ("eth\x1b1", "characters Linux does not allow"),
        ("eth\u00e91", "characters Linux does not allow"),
    ],
)
def test_hostile_interface_names(text: str, fragment: str) -> None:
    for what in ("--ifname", "--host-ifname", "bridge name"):
        with pytest.raises(BadInput) as caught:
            parse_ifname(text, what)
        assert fragment in caught.value.message and caught.value.hint
        assert caught.value.message.isprintable()


def test_ordinary_bridge_names_stay_allowed() -> None:
    for name in ("br-int", "br-ex", "ovsbr0", "a", "0", "x.y_z-1"):
        assert parse_ifname(name, "bridge name") == name


@pytest.mark.parametrize("text", ["02:42:c6:33:64:12\n", " 02:42:c6:33:64:12", "02-42-c6-33-64-12"])
def test_mac_must_match_whole(text: str) -> None:
    with pytest.raises(BadInput):
        parse_mac(text)


@pytest.mark.parametrize(
    "text",
    ["pid:\u00b2", "pid:\u0664\u0662", "pid:99999999999999", "netns:a\x00b", "netns:a\nb",
     "netns: x", "web1/../../images", "-web", "web 1", "web1\n", "", "a" * 300],
)
def test_hostile_guests(text: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_guest(text)
    assert caught.value.message.isprintable()


@pytest.mark.parametrize("text", ["web1", "/web1", "a", "0123456789ab", "my_app.1-x"])
def test_docker_names_and_ids_stay_allowed(text: str) -> None:
    assert parse_guest(text).ref == text
