"""DHCP messages as they go on the wire, through pyroute2's encoder and decoder, and the
places where our adapter fixes around pyroute2 (each test names the case)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Interface

import pytest
from pyroute2.dhcp.dhcp4msg import dhcp4msg
from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket

from ovsbridge.errors import BadInput
from ovsbridge.system import dhcp
from ovsbridge.system.dhcp import INFINITE, _build, _Identity, lease_from_ack

IDENT = _Identity(mac="02:aa:bb:cc:dd:01", hostname="web1", client_id=b"\x00ovsbridge:c1:eth1")
SERVER_MAC = "02:00:00:00:00:fe"


def frame(payload: bytes, src_mac: str = SERVER_MAC, src_ip: str = "203.0.113.1") -> bytes:
    """Ethernet + IPv4 + UDP (67 -> 68) around a DHCP payload, as the raw socket reads it."""
    eth = bytes.fromhex("ffffffffffff") + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    udp_len = 8 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0,
        socket.inet_aton(src_ip), socket.inet_aton("255.255.255.255"),
    )
    udp = struct.pack("!HHHH", 67, 68, udp_len, 0)
    return eth + ip + udp + payload


def reply(mtype: int, options: dict, yiaddr: str = "203.0.113.120", xid: int = 0x1234) -> bytes:
    msg = dhcp4msg(
        {
            "op": 2, "xid": xid, "flags": 0x8000, "yiaddr": yiaddr, "chaddr": IDENT.mac,
            "options": {"message_type": mtype, **options},
        }
    )
    return msg.encode().buf


ACK_OPTIONS = {
    "server_id": "203.0.113.1",
    "lease_time": 120,
    "renewal_time": 60,
    "rebinding_time": 105,
    "subnet_mask": "255.255.255.0",
    "router": ["203.0.113.1", "203.0.113.2"],
    "name_server": ["203.0.113.53", "203.0.113.54"],
    "domain_name": "lab.test",
}


def decode(raw: bytes):
    return AsyncDHCP4Socket._decode_msg(raw)


def test_discover_carries_hostname_client_id_and_our_parameter_list() -> None:
    msg = _build(1, IDENT, xid=0xABCD, requested="203.0.113.7")
    encoded = msg.dhcp.encode().buf
    back = dhcp4msg(buf=encoded).decode()
    opts = back["options"]

    assert back["op"] == 1 and back["xid"] == 0xABCD and back["flags"] == 0x8000
    assert back["chaddr"] == IDENT.mac
    assert opts["host_name"] == "web1"  # option 12
    assert opts["client_id"] == {"type": 0, "key": b"ovsbridge:c1:eth1"}  # option 61
    assert opts["requested_ip"] == "203.0.113.7"
    assert set(opts["parameter_list"]) >= {1, 3, 6, 15, 51, 58, 59}
    assert msg.eth_dst == "ff:ff:ff:ff:ff:ff" and msg.ip_dst == "255.255.255.255"


def test_release_has_no_hostname_and_names_the_server() -> None:
    msg = _build(7, IDENT, xid=1, ciaddr="203.0.113.120", broadcast=False,
                 server_id="203.0.113.1", params=False)
    opts = dhcp4msg(buf=msg.dhcp.encode().buf).decode()["options"]
    assert "host_name" not in opts and "parameter_list" not in opts
    assert opts["server_id"] == "203.0.113.1"


def test_type_1_client_id_bytes_are_encoded_as_pyroute2_wants_a_mac_string() -> None:
    """pyroute2 asserts that a type-1 client id is a MAC *string*; callers give bytes."""
    ident = _Identity(IDENT.mac, None, b"\x01" + bytes.fromhex("02aabbccdd01"))
    opts = dhcp4msg(buf=_build(1, ident, xid=1).dhcp.encode().buf).decode()["options"]
    assert opts["client_id"] == {"type": 1, "key": "02:aa:bb:cc:dd:01"}


def test_empty_client_id_is_refused() -> None:
    with pytest.raises(BadInput):
        _build(1, _Identity(IDENT.mac, None, b""), xid=1)


def test_ack_becomes_a_lease() -> None:
    msg = decode(frame(reply(5, ACK_OPTIONS)))
    lease = lease_from_ack(msg, IDENT, sent_at=1000.0)

    assert lease.address == IPv4Interface("203.0.113.120/24")
    assert lease.router == IPv4Address("203.0.113.1")
    assert lease.dns == ("203.0.113.53", "203.0.113.54")
    assert lease.domain == "lab.test"
    assert (lease.lease_time, lease.renewal_time, lease.rebinding_time) == (120, 60, 105)
    assert lease.server_id == IPv4Address("203.0.113.1") and lease.server_mac == SERVER_MAC
    assert lease.obtained_at == 1000.0 and lease.expires_at == 1120.0
    assert lease.client_id == IDENT.client_id.hex() and lease.hostname == "web1"


def test_infinite_lease_decoded_as_minus_one_by_pyroute2_is_normalised() -> None:
    """pyroute2 decodes options 51/58/59 as signed: 0xffffffff ("forever") arrives as -1."""
    raw = reply(5, {**ACK_OPTIONS, "lease_time": 120})
    raw = raw.replace(b"\x33\x04" + struct.pack(">I", 120), b"\x33\x04\xff\xff\xff\xff")
    msg = decode(frame(raw))
    assert msg.dhcp["options"]["lease_time"] == -1  # the pyroute2 behaviour we fix around

    lease = lease_from_ack(msg, IDENT, sent_at=1000.0)

    assert lease.lease_time == INFINITE and lease.infinite
    assert lease.expires_at == float("inf") and lease.renew_at == float("inf")
    assert not lease.expired(now=1e12)
    assert lease.remaining(now=1e12) == INFINITE  # the kernel's "forever" lifetime


def test_missing_timers_default_to_half_and_seven_eighths() -> None:
    options = {k: v for k, v in ACK_OPTIONS.items() if k not in ("renewal_time", "rebinding_time")}
    options["lease_time"] = 3600
    lease = lease_from_ack(decode(frame(reply(5, options))), IDENT, sent_at=0.0)
    assert (lease.renewal_time, lease.rebinding_time) == (1800, 3150)


def test_inconsistent_timers_are_replaced() -> None:
    options = {**ACK_OPTIONS, "lease_time": 100, "renewal_time": 200, "rebinding_time": 300}
    lease = lease_from_ack(decode(frame(reply(5, options))), IDENT, sent_at=0.0)
    assert 0 < lease.renewal_time < lease.rebinding_time < lease.lease_time


def test_no_subnet_mask_falls_back_to_the_classful_prefix() -> None:
    options = {k: v for k, v in ACK_OPTIONS.items() if k != "subnet_mask"}
    lease = lease_from_ack(decode(frame(reply(5, options, yiaddr="10.1.2.3"))), IDENT, 0.0)
    assert lease.address == IPv4Interface("10.1.2.3/8")


def test_no_router_no_dns_no_domain() -> None:
    options = {k: v for k, v in ACK_OPTIONS.items()
               if k not in ("router", "name_server", "domain_name")}
    lease = lease_from_ack(decode(frame(reply(5, options))), IDENT, 0.0)
    assert lease.router is None and lease.dns == () and lease.domain is None


def test_server_id_falls_back_to_the_source_address() -> None:
    options = {k: v for k, v in ACK_OPTIONS.items() if k != "server_id"}
    lease = lease_from_ack(decode(frame(reply(5, options), src_ip="203.0.113.9")), IDENT, 0.0)
    assert lease.server_id == IPv4Address("203.0.113.9")


def test_ack_without_lease_time_is_an_error() -> None:
    options = {k: v for k, v in ACK_OPTIONS.items() if k != "lease_time"}
    with pytest.raises(dhcp.OperationFailed):
        lease_from_ack(decode(frame(reply(5, options))), IDENT, 0.0)


def test_client_id_and_hostname_helpers() -> None:
    cid = dhcp.client_id_for("0123abcd" * 8, "eth1")
    assert cid[0] == 0 and cid.endswith(b":eth1") and cid == dhcp.client_id_for("0123abcd" * 8,
                                                                                  "eth1")
    assert dhcp.client_id_for("a", "eth1") != dhcp.client_id_for("a", "eth2")
    assert dhcp.hostname_for("My_Web.1") == "my-web-1"
    assert dhcp.hostname_for("___") is None
    assert len(dhcp.hostname_for("x" * 100) or "") == 63
