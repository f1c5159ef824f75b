"""Parsing of ADDRESS, GUEST, MAC, ifname, VLAN and MTU."""

from __future__ import annotations

import ipaddress

import pytest

from ovsbridge.errors import BadInput
from ovsbridge.model import (
    check_mtu,
    check_vlan,
    parse_address_plan,
    parse_guest,
    parse_ifname,
    parse_mac,
)


def test_dual_stack_with_gateways() -> None:
    plan = parse_address_plan("198.51.100.5/24@198.51.100.1,2001:db8::5/64@2001:db8::1")
    assert plan.mode == "static"
    assert [str(s) for s in plan.statics] == ["198.51.100.5/24@198.51.100.1",
                                              "2001:db8::5/64@2001:db8::1"]
    assert plan.statics[1].gateway == ipaddress.ip_address("2001:db8::1")


@pytest.mark.parametrize("text,mode", [("dhcp", "dhcp"), ("DHCP", "dhcp"), ("none", "none")])
def test_keywords(text: str, mode: str) -> None:
    assert parse_address_plan(text).mode == mode


@pytest.mark.parametrize("text", ["", "10", "198.51.100.5", "198.51.100.5/", "198.51.100.5/99",
                                  "x/24", "198.51.100.5/24@", "198.51.100.5/24@x",
                                  "198.51.100.5/24,198.51.100.5/24", "::/64", "ff02::1/64"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(BadInput):
        parse_address_plan(text)


def test_point_to_point_prefixes_allow_any_address() -> None:
    assert parse_address_plan("198.51.100.0/31").statics[0].interface.network.prefixlen == 31


@pytest.mark.parametrize("text,kind,ref", [("web1", "docker", "web1"),
                                           ("netns:blue", "netns", "blue"),
                                           ("pid:42", "pid", "42")])
def test_guests(text: str, kind: str, ref: str) -> None:
    spec = parse_guest(text)
    assert (spec.kind, spec.ref) == (kind, ref)


@pytest.mark.parametrize("text", ["", "netns:", "netns:a/b", "pid:", "pid:0", "pid:x"])
def test_bad_guests(text: str) -> None:
    with pytest.raises(BadInput):
        parse_guest(text)


def test_mac_is_lowercased_and_checked() -> None:
    assert parse_mac("02:AA:bb:00:00:01") == "02:aa:bb:00:00:01"
    for bad in ("03:00:00:00:00:01", "00:00:00:00:00:00", "02:00:00:00:00", "zz:00:00:00:00:01"):
        with pytest.raises(BadInput):
            parse_mac(bad)


def test_ifname_rules() -> None:
    assert parse_ifname("eth1") == "eth1"
    for bad in ("", "x" * 16, "a/b", "a b", "a:b", ".", ".."):
        with pytest.raises(BadInput):
            parse_ifname(bad)


def test_vlan_and_mtu_ranges() -> None:
    assert check_vlan(1) == 1 and check_vlan(4094) == 4094 and check_vlan(None) is None
    assert check_mtu(68) == 68 and check_mtu(9000) == 9000
    for bad in (0, 4095, -1):
        with pytest.raises(BadInput):
            check_vlan(bad)
    for bad in (67, 65536):
        with pytest.raises(BadInput):
            check_mtu(bad)
