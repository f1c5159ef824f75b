"""Parsing of the issue-11 inputs: address mode combinations, trunks, rates, bursts."""

from __future__ import annotations

import pytest

from ovsbridge.errors import BadInput
from ovsbridge.model import parse_address_plan, parse_burst, parse_rate, parse_trunks
from ovsbridge.request import build_attach_request


@pytest.mark.parametrize("text, dynamic, families", [
    ("dhcp,slaac", {"dhcp", "slaac"}, {4, 6}),
    ("dhcp,dhcp6", {"dhcp", "dhcp6"}, {4, 6}),
    ("198.51.100.5/24@198.51.100.1,slaac", {"slaac"}, {4, 6}),
    ("dhcp6,slaac", {"dhcp6", "slaac"}, {6}),
    ("slaac,2001:db8:5::5/64", {"slaac"}, {6}),  # a ULA-style static without a gateway
    ("2001:db8::5/64@fe80::1", set(), {6}),  # a link-local IPv6 gateway
])
def test_accepted_combinations(text: str, dynamic: set[str], families: set[int]) -> None:
    plan = parse_address_plan(text)
    assert plan.dynamic == frozenset(dynamic) and plan.families == frozenset(families)
    assert parse_address_plan(str(plan)) == plan


@pytest.mark.parametrize("text, needle", [
    ("dhcp,dhcp", "given twice"),
    ("none,slaac", "'none' cannot be combined"),
    ("slaac,2001:db8::5/64@2001:db8::1", "two IPv6 gateways"),
    ("dhcp6,2001:db8::5/64@fe80::1", "two IPv6 gateways"),
    ("dhcp,198.51.100.5/24", "IPv4 is asked both"),
    ("slaac,slaac", "given twice"),
])
def test_refused_combinations(text: str, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        parse_address_plan(text)


def test_trunks() -> None:
    assert parse_trunks("30,10,20") == (10, 20, 30)
    assert parse_trunks("100-103,7") == (7, 100, 101, 102, 103)
    for bad, needle in (("", "empty"), ("0", "out of range"), ("4095", "out of range"),
                        ("10,10", "twice"), ("20-10", "ends before"), ("a", "not a number"),
                        ("1-", "not a number")):
        with pytest.raises(BadInput, match=needle):
            parse_trunks(bad)


def test_rates_and_bursts() -> None:
    assert parse_rate("100") == 100 and parse_rate("25mbps") == 25
    assert parse_burst("1000") == 1000 and parse_burst("64KB") == 64
    for bad in ("0", "-5", "1.5", "fast", "100001"):
        with pytest.raises(BadInput):
            parse_rate(bad)
    with pytest.raises(BadInput):
        parse_burst("0")


def test_request_fields_round_trip_and_fingerprint_stays_for_old_requests() -> None:
    base = {"bridge": "br0", "guest": "web1", "address": "none"}
    plain = build_attach_request(base)
    assert "trunk" not in plain.config() and "rate_limit" not in plain.config()
    req = build_attach_request({**base, "trunk": "10,20", "vlan": "5", "rate_limit": "50",
                                "burst": "100", "ra_timeout": "4"})
    assert build_attach_request(req.to_dict()) == req
    assert req.config()["trunk"] == [10, 20] and req.config()["rate_limit"] == 50
    with pytest.raises(BadInput, match="native VLAN"):
        build_attach_request({**base, "address": "dhcp", "trunk": "10"})
    with pytest.raises(BadInput, match="needs --rate-limit"):
        build_attach_request({**base, "burst": "10"})
