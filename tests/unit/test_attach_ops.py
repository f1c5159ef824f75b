"""attach/detach decisions against an in-memory backend: final state, not call order."""

from __future__ import annotations

import ipaddress

import pytest

from ovsbridge import naming
from ovsbridge.errors import Conflict, NotFound, OperationFailed
from ovsbridge.model import parse_address_plan, parse_guest
from ovsbridge.ops.attach import attach, detach
from ovsbridge.ops.backend import RouteRef
from ovsbridge.ops.undo import FAIL_AT_ENV
from ovsbridge.request import AttachRequest

from .fake_backend import FakeBackend

FAILING_METHODS = [
    "create_bridge",
    "create_veth",
    "configure_guest_link",
    "disable_tx_offload",
    "add_port",
    "set_host_alias",
    "add_address",
    "replace_default_route",
    "announce",
]
HOOK_STEPS = ["bridge", "veth", "guest-link", "offload", "port", "addresses", "routes", "announce",
              "ready"]
DHCP_FAILING = ["dhcp_acquire", "dhcp_apply", "write_resolv_conf", "daemon_hold"]
DHCP_STEPS = ["dhcp-lease", "dhcp-apply", "dhcp-hold"]


def request(
    address: str = "198.51.100.5/24@198.51.100.1,2001:db8::5/64", **kw: object
) -> AttachRequest:
    base: dict[str, object] = dict(
        bridge="br0",
        guest=parse_guest("web1"),
        plan=parse_address_plan(address),
        create_bridge=True,
    )
    base.update(kw)
    return AttachRequest(**base)  # type: ignore[arg-type]


def fresh() -> FakeBackend:
    backend = FakeBackend()
    backend.w.default_routes[4] = RouteRef(4, "203.0.113.1", 99)
    return backend


def test_attach_builds_everything_and_tags_the_port() -> None:
    backend = fresh()
    result = attach(backend, request())
    assert result.status == "attached"
    port = backend.w.ports[result.port]
    assert port.external_ids[naming.K_OWNER] == naming.OWNER
    assert port.external_ids[naming.K_CONTAINER_ID] == backend.guest.key
    assert port.external_ids[naming.K_NETNS_INODE] == "777"
    assert backend.w.guest_links["eth1"]["addresses"] == ["198.51.100.5/24", "2001:db8::5/64"]
    assert backend.w.default_routes[4].gateway == "198.51.100.1"
    assert len(result.port) <= 15


def test_same_attach_again_is_a_no_op() -> None:
    backend = fresh()
    attach(backend, request())
    before = backend.state()
    again = attach(backend, request())
    assert again.status == "already attached"
    assert backend.state() == before


def test_other_config_is_a_conflict_unless_replace() -> None:
    backend = fresh()
    attach(backend, request())
    with pytest.raises(Conflict):
        attach(backend, request("198.51.100.6/24"))
    result = attach(backend, request("198.51.100.6/24", replace=True))
    assert result.status == "replaced"
    assert backend.w.guest_links["eth1"]["addresses"] == ["198.51.100.6/24"]
    assert len(backend.w.ports) == 1


def test_missing_bridge_without_create_is_not_found_and_touches_nothing() -> None:
    backend = fresh()
    before = backend.state()
    with pytest.raises(NotFound) as info:
        attach(backend, request(create_bridge=False))
    assert "setup-bridge" in (info.value.hint or "")
    assert "--create-bridge" in (info.value.hint or "")
    assert backend.state() == before


@pytest.mark.parametrize("method", FAILING_METHODS)
def test_failure_in_any_adapter_call_rolls_back_everything(method: str) -> None:
    backend = fresh()
    before = backend.state()
    backend.fail_on = method
    with pytest.raises(OperationFailed, match=method):
        attach(backend, request())
    assert backend.state() == before


@pytest.mark.parametrize("step", HOOK_STEPS)
def test_injected_failure_after_each_step_rolls_back(
    step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = fresh()
    before = backend.state()
    monkeypatch.setenv(FAIL_AT_ENV, step)
    with pytest.raises(OperationFailed, match="injected"):
        attach(backend, request())
    assert backend.state() == before


@pytest.mark.parametrize("method", DHCP_FAILING)
def test_dhcp_failure_rolls_back(method: str) -> None:
    backend = fresh()
    before = backend.state()
    backend.fail_on = method
    with pytest.raises(OperationFailed):
        attach(backend, request("dhcp"))
    assert backend.state() == before


@pytest.mark.parametrize("step", DHCP_STEPS)
def test_dhcp_injected_failure_rolls_back(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = fresh()
    before = backend.state()
    monkeypatch.setenv(FAIL_AT_ENV, step)
    with pytest.raises(OperationFailed):
        attach(backend, request("dhcp"))
    assert backend.state() == before


def test_dhcp_attach_hands_the_lease_to_the_daemon_and_detach_drops_it() -> None:
    backend = fresh()
    result = attach(backend, request("dhcp"))
    assert result.addresses == ("198.51.100.150/24",)
    assert (backend.guest.key, "eth1") in backend.w.held
    detach(backend, parse_guest("web1"), None, False)
    assert backend.w.held == {}


def test_detach_twice_succeeds_and_leaves_nothing() -> None:
    backend = fresh()
    attach(backend, request(create_bridge=True))
    first = detach(backend, parse_guest("web1"), None, False)
    second = detach(backend, parse_guest("web1"), None, False)
    assert len(first.removed) == 1 and second.removed == ()
    assert backend.w.ports == {} and backend.w.host_links == {}


def test_stable_mac_is_local_unicast_and_repeatable() -> None:
    mac = naming.stable_mac("abc", "eth1")
    assert mac == naming.stable_mac("abc", "eth1") != naming.stable_mac("abc", "eth2")
    assert int(mac[:2], 16) & 0x03 == 0x02


def test_pipework_mac_matches_pipework() -> None:
    # pipework: echo TEXT | md5sum | sed 's/^\(..\)\(..\)\(..\)\(..\)\(..\).*$/02:\1:\2:\3:\4:\5/'
    import hashlib

    digest = hashlib.md5(b"web1\n").hexdigest()
    expected = "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))
    assert naming.pipework_mac("web1") == expected


def test_gateway_outside_subnet_is_flagged_on_link() -> None:
    plan = parse_address_plan("198.51.100.5/24@203.0.113.1")
    assert not plan.statics[0].gateway_on_link
    assert plan.statics[0].gateway == ipaddress.ip_address("203.0.113.1")


def test_detach_ports_takes_our_ports_off_and_drops_their_leases() -> None:
    from ovsbridge.ops.attach import detach_ports

    backend = fresh()
    result = attach(backend, request("dhcp"))
    assert detach_ports(backend, "br0", (result.port, "someone-elses")) == [result.port]
    assert backend.w.ports == {} and backend.w.held == {} and backend.w.host_links == {}
