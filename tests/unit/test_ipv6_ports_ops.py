"""attach with slaac/dhcp6 and port features, and ``set``, against the in-memory backend:
final state; a failure at every new step leaves the state as it started."""

from __future__ import annotations

import pytest

from ovsbridge import naming
from ovsbridge.errors import BadInput, NotFound, OperationFailed
from ovsbridge.model import parse_guest
from ovsbridge.ops import addressing, ports
from ovsbridge.ops.attach import attach, detach
from ovsbridge.ops.undo import FAIL_AT_ENV
from ovsbridge.request import build_attach_request

from .fake_backend import FakeBackend
from .test_attach_ops import fresh

V6_FAILING = ["ipv6_prepare", "dhcp6_acquire", "resolv_conf_update", "daemon_hold", "ra_wait",
              "set_port_ids"]
V6_STEPS = ["ipv6-prepare", "dhcp6-lease", "dhcp6-hold", "ra"]


def req(address: str, **fields: object):
    return build_attach_request({"bridge": "br0", "guest": "web1", "address": address,
                                 "create_bridge": True, **fields})


def test_dhcp_dhcp6_slaac_give_every_address_with_its_origin() -> None:
    backend = fresh()
    result = attach(backend, req("dhcp,dhcp6,slaac"))
    assert result.addresses == ("198.51.100.150/24", "2001:db8:1::150/128", "2001:db8:1::aa/64")
    assert result.to_json()["lease6"]["address"] == "2001:db8:1::150/128"
    assert result.to_json()["slaac"]["router"] == "fe80::1"
    port = backend.w.ports[result.port]
    assert addressing.recorded_origins(port.external_ids) == {
        "198.51.100.150/24": "dhcp", "2001:db8:1::150/128": "dhcp6",
        "2001:db8:1::aa/64": "slaac"}
    assert backend.w.guest_links["eth1"]["accept_ra"] == (True, True)
    assert (backend.guest.key, "eth1") in backend.w.held6
    assert set(backend.w.resolv) == {"dhcp6", "slaac"}
    detach(backend, parse_guest("web1"), None, False)
    assert backend.w.held == {} and backend.w.held6 == {}


def test_static_v4_with_slaac_keeps_the_static_origin() -> None:
    backend = fresh()
    result = attach(backend, req("198.51.100.5/24@198.51.100.1,slaac"))
    port = backend.w.ports[result.port]
    assert addressing.recorded_origins(port.external_ids) == {
        "198.51.100.5/24@198.51.100.1": "static", "2001:db8:1::aa/64": "slaac"}


def test_dhcp6_without_an_ra_is_a_note_slaac_without_one_fails() -> None:
    backend = fresh()
    backend.fail_on = "ra_wait"
    result = attach(backend, req("dhcp6"))
    assert result.notes and "IPv6 default route" in result.notes[0]
    other = FakeBackend()
    before = other.state()
    other.fail_on = "ra_wait"
    with pytest.raises(OperationFailed):
        attach(other, req("slaac"))
    assert other.state() == before


@pytest.mark.parametrize("method", V6_FAILING)
def test_ipv6_failure_rolls_back(method: str) -> None:
    backend = fresh()
    before = backend.state()
    backend.fail_on = method
    with pytest.raises(OperationFailed):
        attach(backend, req("dhcp6,slaac"))
    assert backend.state() == before


@pytest.mark.parametrize("step", V6_STEPS)
def test_ipv6_injected_failure_rolls_back(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = fresh()
    before = backend.state()
    monkeypatch.setenv(FAIL_AT_ENV, step)
    with pytest.raises(OperationFailed):
        attach(backend, req("dhcp6,slaac"))
    assert backend.state() == before


def test_lease_mtu_is_capped_and_never_overrides_mtu() -> None:
    plain = req("dhcp")
    assert addressing.lease_mtu(plain, {"mtu": 1400}, 1500) == 1400
    assert addressing.lease_mtu(plain, {"mtu": 9000}, 1500) is None  # never above the bridge
    assert addressing.lease_mtu(req("dhcp", mtu="1450"), {"mtu": 1400}, 1450) is None
    assert addressing.lease_mtu(req("dhcp,slaac"), {"mtu": 1000}, 1500) == 1280
    assert addressing.lease_mtu(plain, {"mtu": None}, 1500) is None


def test_trunk_native_vlan_and_rate_limit_columns() -> None:
    assert ports.columns(req("none", trunk="10,20")) == (
        ("trunks=10,20", "vlan_mode=trunk"), ())
    assert ports.columns(req("dhcp", trunk="10,20", vlan="30"))[0] == (
        "trunks=10,20", "vlan_mode=native-untagged")
    assert ports.columns(req("none", rate_limit="10"))[1] == (
        "ingress_policing_rate=10000", "ingress_policing_burst=1000")
    assert ports.columns(req("none", rate_limit="10", burst="500"))[1][1] == \
        "ingress_policing_burst=4000"


def test_set_changes_the_live_port_and_its_record() -> None:
    backend = fresh()
    result = attach(backend, req("none", vlan="10"))
    ifindex_before = dict(backend.w.guest_links["eth1"])
    done = ports.set_port(backend, parse_guest("web1"), "eth1",
                          {"trunk": "10,20", "vlan": None, "rate_limit": "50"})
    port = backend.w.ports[result.port]
    assert (port.vlan, port.trunks, port.vlan_mode, port.policing_rate) == (
        None, (10, 20), "trunk", 50_000)
    assert done.changed == {"vlan": None, "trunk": [10, 20], "rate_limit": 50}
    assert backend.w.guest_links["eth1"] == ifindex_before  # the veth is untouched
    # the recorded request is the new one: the same attach again is a no-op
    again = attach(backend, req("none", trunk="10,20", rate_limit="50"))
    assert again.status == "already attached"
    cleared = ports.set_port(backend, parse_guest("web1"), "eth1", {"rate_limit": None})
    assert cleared.rate_limit is None and backend.w.ports[result.port].policing_rate is None


def test_set_refuses_bad_input_and_unknown_interfaces() -> None:
    backend = fresh()
    attach(backend, req("none"))
    with pytest.raises(BadInput):
        ports.set_port(backend, parse_guest("web1"), "eth1", {})
    with pytest.raises(BadInput):
        ports.set_port(backend, parse_guest("web1"), "eth1", {"trunk": "0"})
    with pytest.raises(NotFound):
        ports.set_port(backend, parse_guest("web1"), "eth9", {"vlan": "5"})
    port = next(iter(backend.w.ports.values()))
    assert naming.K_REQUEST in port.external_ids
