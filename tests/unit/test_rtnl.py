"""rtnl.Route: pyroute2's messages on a plain socket (read-only requests: no root needed)."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from ovsbridge.system import rtnl


def encoded_link(index: int, name: str, alias: str | None) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = 1
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_MTU", 1500)]
    if alias is not None:
        attrs.append(("IFLA_IFALIAS", alias))
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def test_a_link_reply_reads_index_name_and_alias_without_decoding() -> None:
    reply = rtnl.LinkReply(encoded_link(42, "ovb0123456789a", "ovsbridge ready eth1 abc"))
    assert reply["index"] == 42 and reply["flags"] & 1
    assert reply.get_attr("IFLA_IFNAME") == "ovb0123456789a"
    assert reply.get_attr("IFLA_IFALIAS") == "ovsbridge ready eth1 abc"
    assert reply.get_attr("IFLA_MTU") == 1500  # anything else: pyroute2 decodes it


def test_a_link_reply_without_alias_has_none() -> None:
    assert rtnl.LinkReply(encoded_link(3, "eth0", None)).get_attr("IFLA_IFALIAS") is None


@pytest.fixture
def route() -> Any:
    fd = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).detach()
    made: list[Any] = []

    def full() -> Any:
        from pyroute2 import IPRoute

        made.append(IPRoute())
        return made[-1]

    r = rtnl.Route(fd, full)
    yield r
    r.close()


def test_route_gets_a_link_by_name_from_the_kernel(route: Any) -> None:
    (lo,) = route.link("get", ifname="lo")
    assert lo["index"] == 1 and lo.get_attr("IFLA_IFNAME") == "lo"
    assert route.link_lookup(ifname="lo") == [1]


def test_route_reports_a_missing_link_as_the_kernel_does(route: Any) -> None:
    with pytest.raises(NetlinkError) as err:
        route.link("get", ifname="obtnosuchlink")
    assert err.value.code == errno.ENODEV
    assert route.link_lookup(ifname="obtnosuchlink") == []


def test_route_hands_other_calls_to_a_full_iproute(route: Any) -> None:
    names = {m.get_attr("IFLA_IFNAME") for m in route.get_links()}
    assert "lo" in names
