"""Values of ovsbridge: parsed and validated user input, and the records ops return.

Pure and side-effect free. Every parser raises ``BadInput`` with a message that names the
bad value and a hint with the accepted form, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from ovsbridge.errors import BadInput

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ADDRESS_FORMS = "IP/PREFIX, IP/PREFIX@GATEWAY, a comma-separated list of them, 'dhcp' or 'none'"
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class StaticAddress:
    """One address for the guest, with an optional gateway of the same family."""

    interface: IPInterface
    gateway: IPAddress | None = None

    @property
    def version(self) -> int:
        return self.interface.version

    @property
    def gateway_on_link(self) -> bool:
        return self.gateway is None or self.gateway in self.interface.network

    def __str__(self) -> str:
        text = self.interface.with_prefixlen
        return f"{text}@{self.gateway}" if self.gateway else text


# Dynamic address modes and the address family each one configures. "dhcp" is DHCPv4; later
# modes (e.g. "dhcp6", "slaac") add themselves here.
DYNAMIC_MODES: dict[str, int] = {"dhcp": 4}


@dataclass(frozen=True)
class AddressPlan:
    """What ADDRESS asked for, per family: static addresses and dynamic modes (``dhcp``).

    An empty plan is ``none`` (a bare link). ``mode`` is the summary older callers use:
    ``dhcp`` when DHCPv4 is asked, else ``static`` when there are statics, else ``none``.
    """

    statics: tuple[StaticAddress, ...] = ()
    dynamic: frozenset[str] = frozenset()

    @property
    def mode(self) -> Literal["static", "dhcp", "none"]:
        if "dhcp" in self.dynamic:
            return "dhcp"
        return "static" if self.statics else "none"

    def family_modes(self, version: int) -> tuple[str, ...]:
        """What configures address family VERSION: dynamic modes, then "static" if any."""
        modes = [m for m in sorted(self.dynamic) if DYNAMIC_MODES.get(m) == version]
        if any(s.version == version for s in self.statics):
            modes.append("static")
        return tuple(modes)

    @property
    def families(self) -> frozenset[int]:
        return frozenset({s.version for s in self.statics} |
                         {DYNAMIC_MODES[m] for m in self.dynamic})

    def __str__(self) -> str:
        parts = [*sorted(self.dynamic), *(str(s) for s in self.statics)]
        return ",".join(parts) or "none"


def parse_address_plan(text: str) -> AddressPlan:
    """Parse the ADDRESS argument of attach: ``none``, or a comma list of dynamic modes and
    static ``IP/PREFIX[@GATEWAY]`` entries, at most one way per address family."""
    raw = text.strip()
    if not raw:
        raise BadInput("address is empty", hint=f"give {ADDRESS_FORMS}")
    words = [w.strip() for w in raw.split(",")]
    if any(w.lower() == "none" for w in words):
        if len(words) > 1:
            raise BadInput(f"'none' cannot be combined with other addresses in {raw!r}",
                           hint="give 'none' alone for a bare link")
        return AddressPlan()
    dynamic: set[str] = set()
    statics: list[StaticAddress] = []
    for word in words:
        mode = word.lower()
        if mode in DYNAMIC_MODES:
            if mode in dynamic:
                raise BadInput(f"'{mode}' is given twice in {raw!r}", hint="list it once")
            dynamic.add(mode)
        else:
            statics.append(parse_static(word))
    _check_statics(statics, raw)
    for mode in dynamic:
        version = DYNAMIC_MODES[mode]
        clash = next((s for s in statics if s.version == version), None)
        if clash is not None:
            raise BadInput(f"IPv{version} is asked both by '{mode}' and as {clash} in {raw!r}",
                           hint=f"give either '{mode}' or static IPv{version} addresses")
    return AddressPlan(tuple(statics), frozenset(dynamic))


def _check_statics(statics: list[StaticAddress], raw: str) -> None:
    seen_gw: set[int] = set()
    seen_ip: set[str] = set()
    for item in statics:
        ip = str(item.interface.ip)
        if ip in seen_ip:
            raise BadInput(f'address "{ip}" is given twice in {raw!r}', hint="list it once")
        seen_ip.add(ip)
        if item.gateway is not None:
            if item.version in seen_gw:
                raise BadInput(
                    f"two IPv{item.version} gateways given in {raw!r}",
                    hint="give at most one gateway per address family",
                )
            seen_gw.add(item.version)


def parse_static(part: str) -> StaticAddress:
    part = part.strip()
    if not part:
        raise BadInput("empty entry in the address list", hint=f"give {ADDRESS_FORMS}")
    addr_text, _, gw_text = part.partition("@")
    if "/" not in addr_text:
        raise BadInput(
            f'address "{part}" has no prefix length',
            hint="write it as IP/PREFIX, e.g. 198.51.100.18/24",
        )
    ip_text, _, prefix_text = addr_text.partition("/")
    if not prefix_text.isdigit():
        raise BadInput(f'prefix "/{prefix_text}" in "{part}" is not a number',
                       hint="use a prefix length such as /24 or /64")
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        raise BadInput(f'"{ip_text}" is not an IPv4 or IPv6 address',
                       hint=f"give {ADDRESS_FORMS}") from None
    prefix = int(prefix_text)
    if prefix > ip.max_prefixlen or prefix < 1:
        raise BadInput(f'prefix /{prefix} is out of range for "{ip}"',
                       hint=f"use 1-{ip.max_prefixlen} for IPv{ip.version}")
    iface = ipaddress.ip_interface(f"{ip}/{prefix}")
    _check_host_address(iface, part)
    gateway: IPAddress | None = None
    if "@" in part:
        gateway = _parse_gateway(gw_text, iface, part)
    return StaticAddress(iface, gateway)


def _check_host_address(iface: IPInterface, part: str) -> None:
    ip = iface.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise BadInput(f'"{ip}" in "{part}" cannot be a host address',
                       hint="give a unicast address")
    if ip.version == 4 and iface.network.prefixlen < 31:
        if ip == iface.network.network_address:
            raise BadInput(f'"{ip}" is the network address of {iface.network}',
                           hint="pick a host address inside the subnet")
        if ip == iface.network.broadcast_address:
            raise BadInput(f'"{ip}" is the broadcast address of {iface.network}',
                           hint="pick a host address inside the subnet")


def _parse_gateway(text: str, iface: IPInterface, part: str) -> IPAddress:
    if not text:
        raise BadInput(f'gateway after "@" is missing in "{part}"', hint="write IP/PREFIX@GATEWAY")
    try:
        gw = ipaddress.ip_address(text)
    except ValueError:
        raise BadInput(f'gateway "{text}" is not an IP address',
                       hint="write IP/PREFIX@GATEWAY") from None
    if gw.version != iface.version:
        raise BadInput(f'gateway "{gw}" is IPv{gw.version} but "{iface}" is IPv{iface.version}',
                       hint="give a gateway of the address's own family")
    if gw == iface.ip:
        raise BadInput(f'gateway "{gw}" is the address itself', hint="give the router's address")
    if gw.is_multicast or gw.is_unspecified or gw.is_loopback:
        raise BadInput(f'gateway "{gw}" is not a unicast address', hint="give the router's address")
    return gw


def parse_mac(text: str) -> str:
    """Validate an explicit MAC; returns it lower-case. ``U:TEXT`` is handled by the caller."""
    if not _MAC_RE.match(text):
        raise BadInput(f'MAC "{text}" is malformed',
                       hint="write six hex pairs, e.g. 02:42:c6:33:64:12")
    mac = text.lower()
    first = int(mac[:2], 16)
    if first & 1:
        raise BadInput(f'MAC "{text}" is a multicast address',
                       hint="the first octet must be even, e.g. 02:...")
    if mac == "00:00:00:00:00:00":
        raise BadInput(f'MAC "{text}" is all zeros', hint="give a unicast MAC such as 02:...")
    return mac


def parse_ifname(text: str, what: str = "interface name") -> str:
    if not text:
        raise BadInput(f"{what} is empty", hint="give 1-15 characters: letters, digits, _ . -")
    if len(text) > 15:
        raise BadInput(f'{what} "{text}" is {len(text)} characters long',
                       hint="Linux allows at most 15")
    if text in (".", "..") or not _IFNAME_RE.match(text):
        raise BadInput(f'{what} "{text}" has characters Linux does not allow',
                       hint="use letters, digits, _ . - (no '/', ':' or spaces)")
    return text


def check_vlan(tag: int | None) -> int | None:
    if tag is not None and not 1 <= tag <= 4094:
        raise BadInput(f"VLAN {tag} is out of range", hint="use a VLAN tag from 1 to 4094")
    return tag


def check_mtu(mtu: int | None) -> int | None:
    if mtu is not None and not 68 <= mtu <= 65535:
        raise BadInput(f"MTU {mtu} is out of range", hint="use an MTU from 68 to 65535")
    return mtu


@dataclass(frozen=True)
class Guest:
    """A resolved guest: whose network namespace the interface goes into."""

    kind: Literal["docker", "netns", "pid"]
    key: str  # stable identity: container id, netns name, or pid
    name: str  # what to show people
    pid: int | None  # a process in the netns (None for a named netns)
    netns_path: str  # /proc/PID/ns/net or /var/run/netns/NAME
    netns_inode: int
    resolv_conf: str | None = None  # docker: the container's own resolv.conf

    @property
    def short_id(self) -> str:
        return self.key[:12] if self.kind == "docker" else self.key


@dataclass(frozen=True)
class GuestSpec:
    """GUEST as typed: ``netns:NAME``, ``pid:N`` or a container name or id."""

    kind: Literal["docker", "netns", "pid"]
    ref: str

    def __str__(self) -> str:
        return self.ref if self.kind == "docker" else f"{self.kind}:{self.ref}"


def parse_guest(text: str) -> GuestSpec:
    if not text:
        raise BadInput("guest is empty", hint="give a container name or id, netns:NAME or pid:N")
    if text.startswith("netns:"):
        name = text[len("netns:") :]
        if not name or "/" in name or name in (".", ".."):
            raise BadInput(f'network namespace name "{name}" is invalid',
                           hint="give netns:NAME as listed by 'ip netns'")
        return GuestSpec("netns", name)
    if text.startswith("pid:"):
        num = text[len("pid:") :]
        if not num.isdigit() or int(num) < 1:
            raise BadInput(f'"{text}" is not a process id',
                           hint="give pid:N with N a positive number")
        return GuestSpec("pid", str(int(num)))
    return GuestSpec("docker", text)


@dataclass(frozen=True)
class PortRecord:
    """One row of ``ovsbridge ps``: an OVS port and what it leads to."""

    bridge: str
    port: str
    ofport: int | None
    container_id: str | None
    container_name: str | None
    ifname: str | None
    mac: str | None
    addresses: tuple[str, ...]
    vlan: int | None
    mode: str | None
    state: str
    owner: str
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    mtu: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "bridge": self.bridge,
            "port": self.port,
            "ofport": self.ofport,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "ifname": self.ifname,
            "mac": self.mac,
            "addresses": list(self.addresses),
            "vlan": self.vlan,
            "mode": self.mode,
            "state": self.state,
            "owner": self.owner,
            "mtu": self.mtu,
        }
