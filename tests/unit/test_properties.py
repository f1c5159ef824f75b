"""Property-based tests (hypothesis) of every parser in model.py and of the name generator.

Parsers: whatever the text, they return a value or raise BadInput (never anything else, so
the CLI always exits 2 with one line), and what they accept round-trips: parsing the value's
own text gives the same value. Names: at most 15 characters, deterministic, valid for Linux
(and for our own parser), no collision over 10,000 container ids.
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ovsbridge import naming
from ovsbridge.errors import BadInput
from ovsbridge.model import (
    check_mtu,
    check_vlan,
    parse_address_plan,
    parse_guest,
    parse_ifname,
    parse_mac,
    parse_static,
)

FAST = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GENERATORS = settings(max_examples=10_000, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def accepted(parse: Callable[[str], Any], text: str) -> Any | None:
    """parse(text), or None when it is refused with BadInput; any other exception fails."""
    try:
        return parse(text)
    except BadInput as exc:
        assert exc.message and exc.message.isprintable(), repr(exc.message)
        assert "\n" not in (exc.hint or "")
        return None


# -- text that looks like what people (and attackers) type ----------------------------------

_TRICKY = ["", " ", "%", "%eth1", "/", "//", "@", "@@", ",", ":", "::", ".", "-", "\n", "\x00",
           "\x1b[31m", "\u00b2", "\u0662", "\uff10", "+", "0", "00", "255", "256", "ffff",
           "::ffff:", "fe80::1", "dhcp", "none", "DHCP"]


def _ip_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.ip_addresses().map(str),
        st.ip_addresses(v=6).map(lambda ip: ip.exploded),
        st.sampled_from(["0.0.0.0", "255.255.255.255", "240.0.0.1", "::", "::1",
                         "::ffff:198.51.100.7", "fe80::1", "198.51.100.0", "198.51.100.255"]),
    )


@st.composite
def _address_item(draw: st.DrawFn) -> str:
    ip = draw(_ip_text())
    if draw(st.booleans()):
        ip += "%" + draw(st.sampled_from(["eth1", "1", "", "lo"]))
    text = ip
    if draw(st.integers(0, 9)) > 0:
        text += "/" + draw(st.one_of(st.integers(-1, 140).map(str), st.sampled_from(_TRICKY)))
    if draw(st.booleans()):
        text += "@" + draw(st.one_of(_ip_text(), st.sampled_from(_TRICKY)))
    return text


_address_text = st.one_of(
    _address_item(),
    st.lists(_address_item(), min_size=1, max_size=4).map(",".join),
    st.lists(st.one_of(_address_item(), st.sampled_from(_TRICKY)), max_size=4).map("".join),
    st.text(max_size=40),
)


# -- parsers ----------------------------------------------------------------------------------


@FAST
@given(_address_text)
@example("198.51.100.5/24@198.51.100.1,2001:db8::5/64@fe80::1")
@example("2001:db8::5%eth1/64")
def test_address_plan_only_raises_bad_input_and_round_trips(text: str) -> None:
    plan = accepted(parse_address_plan, text)
    if plan is None:
        return
    again = parse_address_plan(str(plan))
    assert again == plan
    assert str(again) == str(plan)


@FAST
@given(_address_item())
def test_static_address_round_trips_and_is_a_unicast_host(text: str) -> None:
    item = accepted(parse_static, text)
    if item is None:
        return
    assert parse_static(str(item)) == item
    ip = item.interface.ip
    assert not (ip.is_multicast or ip.is_unspecified or ip.is_loopback)
    assert "%" not in str(item)
    if isinstance(ip, ipaddress.IPv6Address):
        assert ip.ipv4_mapped is None
    else:
        assert ip not in ipaddress.ip_network("240.0.0.0/4")
    if item.gateway is not None:
        assert item.gateway.version == ip.version and item.gateway != ip


@FAST
@given(st.one_of(_ip_text(), st.text(max_size=30)))
def test_gateway_only_raises_bad_input(gateway: str) -> None:
    for address in ("198.51.100.5/24", "2001:db8::5/64"):
        item = accepted(parse_static, f"{address}@{gateway}")
        if item is not None:
            assert item.gateway is not None
            assert str(item.gateway) == str(ipaddress.ip_address(gateway.strip()))


_mac_text = st.one_of(
    st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
        lambda b: ":".join(f"{x:02X}" if x % 3 else f"{x:02x}" for x in b)),
    st.text(alphabet=string.hexdigits + ":-\n ", max_size=20),
    st.text(max_size=20),
)


@FAST
@given(_mac_text)
def test_mac_only_raises_bad_input_and_round_trips(text: str) -> None:
    mac = accepted(parse_mac, text)
    if mac is None:
        return
    assert mac == text.lower() and parse_mac(mac) == mac
    assert int(mac[:2], 16) & 1 == 0 and mac != "00:00:00:00:00:00"


_ifname_text = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "_.-", max_size=17),
    st.sampled_from(["ovs-system", "ovs-netdev", "br-int", "all", "default", "lo", "-rf"]),
    st.text(max_size=17),
)


@FAST
@given(_ifname_text, st.sampled_from(["--ifname", "--host-ifname", "bridge name"]))
def test_ifname_only_raises_bad_input_and_is_returned_as_given(text: str, what: str) -> None:
    name = accepted(lambda t: parse_ifname(t, what), text)
    if name is None:
        return
    assert name == text and 1 <= len(name) <= 15 and not name.startswith("-")
    assert name not in ("ovs-system", "ovs-netdev", ".", "..", "all", "default")
    assert name.isascii() and name.isprintable() and "/" not in name and ":" not in name


@FAST
@given(st.integers(-(2**40), 2**40) | st.none())
def test_vlan_and_mtu_only_raise_bad_input(value: int | None) -> None:
    for check in (check_vlan, check_mtu):
        try:
            assert check(value) == value
        except BadInput:
            assert value is not None


_guest_text = st.one_of(
    st.tuples(st.sampled_from(["netns:", "pid:", ""]), st.text(max_size=20)).map("".join),
    st.integers(-5, 2**40).map(lambda n: f"pid:{n}"),
    st.text(alphabet=string.ascii_letters + string.digits + "_.-/", max_size=20),
)


@FAST
@given(_guest_text)
def test_guest_only_raises_bad_input_and_round_trips(text: str) -> None:
    spec = accepted(parse_guest, text)
    if spec is None:
        return
    assert parse_guest(str(spec)) == spec
    assert spec.ref.isprintable() and "/" not in spec.ref.lstrip("/")


# -- the name generator -----------------------------------------------------------------------

_container_id = st.binary(min_size=32, max_size=32).map(bytes.hex)
_guest_ifname = st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1,
                        max_size=15).filter(lambda t: not t.startswith("-"))


@pytest.mark.slow
@GENERATORS
@given(_container_id, _guest_ifname)
def test_host_ifname_is_short_deterministic_and_valid(cid: str, ifname: str) -> None:
    name = naming.host_ifname(cid, ifname)
    assert name == naming.host_ifname(cid, ifname)
    assert len(name) <= naming.IFNAMSIZ_MAX and name.startswith(naming.HOST_PREFIX)
    assert parse_ifname(name, "--host-ifname") == name
    peer = naming.peer_tmp_ifname(name)
    assert len(peer) <= naming.IFNAMSIZ_MAX and peer != name
    assert parse_ifname(peer, "--ifname") == peer


@pytest.mark.slow
@GENERATORS
@given(_container_id, _guest_ifname)
def test_stable_mac_is_deterministic_local_unicast(cid: str, ifname: str) -> None:
    mac = naming.stable_mac(cid, ifname)
    assert mac == naming.stable_mac(cid, ifname)
    assert parse_mac(mac) == mac
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast


def test_no_name_or_mac_collision_over_10000_container_ids() -> None:
    rng = random.Random(9)
    ids = {rng.randbytes(32).hex() for _ in range(10_000)}
    assert len(ids) == 10_000
    for ifname in ("eth1", "eth2"):
        names = {naming.host_ifname(cid, ifname) for cid in ids}
        macs = {naming.stable_mac(cid, ifname) for cid in ids}
        assert len(names) == len(ids) and len(macs) == len(ids)
    # two interfaces of one container never share a name either
    assert all(naming.host_ifname(c, "eth1") != naming.host_ifname(c, "eth2") for c in ids)


@FAST
@given(_container_id)
def test_names_differ_for_different_ifnames_of_one_guest(cid: str) -> None:
    ifnames = ["eth1", "eth2", "eth10", "net0"]
    assume(len(set(ifnames)) == 4)
    assert len({naming.host_ifname(cid, i) for i in ifnames}) == 4
