"""pipework_argv reads pipework's command line as the pipework script does (no host needed)."""

from __future__ import annotations

import pytest

from ovsbridge import naming
from ovsbridge.errors import BadInput, NotFound
from ovsbridge.pipework_argv import Attach, NetnsCommand, Wait, parse
from ovsbridge.request import build_attach_request


class Host:
    def __init__(self, kinds: dict[str, str] | None = None,
                 macs: dict[str, str] | None = None) -> None:
        self.kinds = kinds or {"ovsbr0": "ovs-bridge", "eth0": "nic", "br0": "linux-bridge",
                               "ib0": "ipoib"}
        self.macs = macs or {"02:00:00:00:00:01": "ovsbr0"}

    def kind_of(self, name: str):  # type: ignore[no-untyped-def]
        return self.kinds.get(name)

    def interface_with_mac(self, mac: str) -> str | None:
        return self.macs.get(mac)


def attach(*argv: str) -> Attach:
    parsed = parse(list(argv), Host())
    assert isinstance(parsed, Attach)
    return parsed


def test_static_with_every_option_in_pipework_order() -> None:
    got = attach("ovsbr0", "-i", "eth2", "-l", "vhost1", "-a", "4", "web1",
                 "198.51.100.5/24@198.51.100.1", "02:42:c6:33:64:12@20")
    assert got.fields == {"bridge": "ovsbr0", "guest": "web1", "ifname": "eth2",
                          "host_ifname": "vhost1", "address": "198.51.100.5/24@198.51.100.1",
                          "mac": "02:42:c6:33:64:12", "vlan": "20"}



def test_u_text_and_vlan() -> None:
    got = attach("ovsbr0", "web1", "dhcp", "U:a  b@12@junk")
    assert got.fields["mac"] == naming.pipework_mac("a  b") == naming.pipework_mac("a b")
    assert got.fields["vlan"] == "12" and got.client == "dhcp"
    assert attach("ovsbr0", "web1", "0/0", "@7").fields == {
        "bridge": "ovsbr0", "guest": "web1", "address": "none", "vlan": "7"}
    assert attach("ovsbr0", "web1", "dhcp", "U:x:y").fields["mac"] == naming.pipework_mac("x:y")


def test_dhcp_clients_and_their_options() -> None:
    got = attach("ovsbr0", "web1", "udhcpc-f:-x hostname:box -t 5 -T 2 -r 198.51.100.9")
    assert got.client == "udhcpc" and got.fields["address"] == "dhcp"
    assert got.fields["hostname"] == "box" and got.fields["dhcp_timeout"] == "10.0"
    assert any("-r 198.51.100.9" in n for n in got.notes)
    assert attach("ovsbr0", "web1", "dhcp:-f").notes
    for client in ("dhclient", "dhclient-f", "dhcpcd", "udhcpc"):
        assert attach("ovsbr0", "web1", client).fields["address"] == "dhcp"


def test_wait_route_rule_tc() -> None:
    assert parse(["--wait"], Host()) == Wait("eth1")
    assert parse(["--wait", "-i", "eth2"], Host()) == Wait("eth2")
    route = parse(["route", "web1", "add", "default", "via", "198.51.100.1"], Host())
    assert route == NetnsCommand("route", "web1", ("add", "default", "via", "198.51.100.1"))
    assert isinstance(route, NetnsCommand)
    assert route.argv == ("ip", "route", "add", "default", "via", "198.51.100.1")
    tc = parse(["tc", "web1", "qdisc", "show"], Host())
    assert isinstance(tc, NetnsCommand) and tc.argv == ("tc", "qdisc", "show")


def test_mac_bridge_and_missing_ovs_bridge() -> None:
    assert attach("mac:02:00:00:00:00:01", "web1", "dhcp").fields["bridge"] == "ovsbr0"
    with pytest.raises(NotFound):
        attach("mac:02:00:00:00:00:09", "web1", "dhcp")
    assert attach("ovsnew", "web1", "dhcp").fields["create_bridge"] == "true"


@pytest.mark.parametrize(("argv", "words"), [
    (["br0", "web1", "dhcp"], "Linux bridge"),
    (["brnew", "web1", "dhcp"], "Linux bridge"),
    (["eth0", "web1", "dhcp"], "macvlan"),
    (["ib0", "web1", "dhcp"], "IPoIB"),
    (["--direct-phys", "eth0", "web1", "dhcp"], "--direct-phys"),
    (["dummy0", "web1", "dhcp"], "dummy"),
    (["ovsbr0", "web1", "198.51.100.5"], "netmask"),
    (["ovsbr0", "web1"], "needs a guest and an address"),
    (["ovsbr0", "-a", "6", "web1", "198.51.100.5/24"], "not an IPv6 address"),
])
def test_refusals_name_the_alternative(argv: list[str], words: str) -> None:
    with pytest.raises(BadInput) as info:
        parse(argv, Host())
    assert words in info.value.message and info.value.hint
    assert info.value.exit_code == 2


def test_fields_build_through_the_one_request_builder() -> None:
    got = attach("ovsnew", "-i", "eth2", "-l", "vhost1", "web1", "198.51.100.5/24@203.0.113.1",
                 "U:web 1@20")
    request = build_attach_request(got.fields)
    assert (request.bridge, request.ifname, request.host_ifname, request.vlan, request.mac,
            request.create_bridge) == ("ovsnew", "eth2", "vhost1", 20,
                                       naming.pipework_mac("web 1"), True)


def test_mac_option_refuses_u_text_with_vlan() -> None:
    with pytest.raises(BadInput) as info:
        build_attach_request({"bridge": "ovsbr0", "guest": "web1", "address": "dhcp",
                              "mac": "U:web1@10"})
    assert "--vlan" in (info.value.hint or "") and info.value.exit_code == 2
