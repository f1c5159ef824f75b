"""The rtnetlink requests of an attach, sent on a plain socket with pyroute2's messages.

pyroute2's ``IPRoute`` runs every request through an asyncio event loop and its request
filters: about 0.3 ms of Python per request, and a new event loop per socket. ``Route``
answers the few calls an attach makes per guest (a link by name, veth creation, link
changes and deletion, an address) by encoding pyroute2's ``ifinfmsg``/``ifaddrmsg`` itself
and reading the kernel's answer from the socket directly (measured: a link change 222 ->
26 us). Any other call goes to a full ``IPRoute``, made on first use.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFLA_IFNAME = 3
_IFLA_IFALIAS = 20
# what link("set"/"add") takes as attributes (the rest of its keywords: full IPRoute)
_LINK_ATTRS = {"ifname": "IFLA_IFNAME", "address": "IFLA_ADDRESS", "mtu": "IFLA_MTU",
               "ifalias": "IFLA_IFALIAS", "net_ns_fd": "IFLA_NET_NS_FD"}


class LinkReply:
    """A link as the kernel described it: ``["index"]``, ``["flags"]`` and ``get_attr`` of
    its name and ifalias (read from the message without decoding the rest)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        _family, _type, self.index, self.flags = struct.unpack_from("=BxHiI", data, 16)

    def __getitem__(self, key: str) -> int:
        if key == "index":
            return int(self.index)
        if key == "flags":
            return int(self.flags)
        raise KeyError(key)

    def get_attr(self, name: str) -> str | None:
        wanted = {"IFLA_IFNAME": _IFLA_IFNAME, "IFLA_IFALIAS": _IFLA_IFALIAS}.get(name)
        if wanted is None:
            full = ifinfmsg(self.data)
            full.decode()
            value: str | None = full.get_attr(name)
            return value
        offset, end = 32, len(self.data)
        while offset + 4 <= end:
            length, kind = struct.unpack_from("=HH", self.data, offset)
            if length < 4:
                break
            if kind & 0x3FFF == wanted:
                return self.data[offset + 4:offset + length].split(b"\0", 1)[0].decode()
            offset += (length + 3) & ~3
        return None


class Route:
    """A NETLINK_ROUTE socket (FD, owned) with the IPRoute calls an attach makes, fast; every
    other call goes to the IPRoute MAKE_FULL gives (made on first use, closed with this).
    RELEASE is called at close when no full IPRoute was made (it frees what MAKE_FULL
    would have used)."""

    def __init__(self, fd: int, make_full: Callable[[], IPRoute],
                 release: Callable[[], None] | None = None) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0, fileno=fd)
        self.sock.bind((0, 0))
        self.seq = 0
        self._make_full = make_full
        self._release = release
        self._full: IPRoute | None = None

    # the calls an attach makes ------------------------------------------------------------
    def link(self, command: str, **kwarg: Any) -> Any:
        if command == "get" and set(kwarg) <= {"ifname", "index"}:
            msg = ifinfmsg()
            msg["index"] = kwarg.get("index", 0)
            if "ifname" in kwarg:
                msg["attrs"] = [("IFLA_IFNAME", kwarg["ifname"])]
            return [LinkReply(r) for r in self._request(msg, RTM_GETLINK, NLM_F_REQUEST)]
        if command == "del" and set(kwarg) == {"index"}:
            msg = ifinfmsg()
            msg["index"] = kwarg["index"]
            self._request(msg, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK)
            return []
        if command in ("set", "add") and self._simple(kwarg):
            msg = self._link_msg(kwarg)
            flags = NLM_F_REQUEST | NLM_F_ACK
            if command == "add":
                flags |= NLM_F_CREATE | NLM_F_EXCL
            self._request(msg, RTM_NEWLINK, flags)
            return []
        return self.full.link(command, **kwarg)

    def link_lookup(self, **kwarg: Any) -> list[int]:
        if set(kwarg) != {"ifname"}:
            return list(self.full.link_lookup(**kwarg))
        try:
            return [reply["index"] for reply in self.link("get", ifname=kwarg["ifname"])]
        except NetlinkError:
            return []

    def addr(self, command: str, **kwarg: Any) -> Any:
        if command != "add" or not set(kwarg) <= {"index", "address", "prefixlen",
                                                  "broadcast", "flags"}:
            return self.full.addr(command, **kwarg)
        address = ipaddress.ip_address(kwarg["address"])
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET if address.version == 4 else socket.AF_INET6
        msg["prefixlen"] = kwarg["prefixlen"]
        msg["index"] = kwarg["index"]
        attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", str(address))]
        if address.version == 4:
            attrs.append(("IFA_LOCAL", str(address)))
        if kwarg.get("broadcast"):
            attrs.append(("IFA_BROADCAST", kwarg["broadcast"]))
        if kwarg.get("flags"):
            attrs.append(("IFA_FLAGS", kwarg["flags"]))
        msg["attrs"] = attrs
        self._request(msg, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        return []

    # everything else ----------------------------------------------------------------------
    @property
    def full(self) -> IPRoute:
        if self._full is None:
            self._full = self._make_full()
        return self._full

    def __getattr__(self, name: str) -> Any:
        return getattr(self.full, name)

    def close(self) -> None:
        self.sock.close()
        if self._full is not None:
            self._full.close()
        elif self._release is not None:
            self._release()

    # messages -----------------------------------------------------------------------------
    @staticmethod
    def _simple(kwarg: dict[str, Any]) -> bool:
        extra = set(kwarg) - set(_LINK_ATTRS) - {"index", "state", "kind", "peer"}
        if extra or kwarg.get("state", "up") not in ("up", "down"):
            return False
        if "kind" in kwarg or "peer" in kwarg:
            peer = kwarg.get("peer")
            return kwarg.get("kind") == "veth" and isinstance(peer, dict) and set(peer) <= {
                "ifname", "net_ns_fd", "mtu", "address"}
        return True

    @staticmethod
    def _link_msg(kwarg: dict[str, Any]) -> ifinfmsg:
        msg = ifinfmsg()
        msg["index"] = kwarg.get("index", 0)
        if "state" in kwarg:
            msg["change"] = IFF_UP
            msg["flags"] = IFF_UP if kwarg["state"] == "up" else 0
        attrs = [(_LINK_ATTRS[k], v) for k, v in kwarg.items() if k in _LINK_ATTRS]
        if kwarg.get("kind") == "veth":
            peer = [(_LINK_ATTRS[k], v) for k, v in kwarg["peer"].items()]
            attrs.append(("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]})]}))
        msg["attrs"] = attrs
        return msg

    def _request(self, msg: Any, kind: int, flags: int) -> list[bytes]:
        """Send MSG; the replies to it (NetlinkError when the kernel refuses it)."""
        self.seq = self.seq % 0x7FFFFFFF + 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, rtype, _rflags, seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(0, "malformed netlink reply")
                part = data[offset:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue  # a late reply to an earlier request
                if rtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", part, 16)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies  # the ack
                if rtype == _NLMSG_DONE:
                    return replies
                replies.append(part)
                if not flags & NLM_F_ACK:
                    return replies  # a get: one answer, no ack asked
