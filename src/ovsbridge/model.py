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

ADDRESS_FORMS = ("IP/PREFIX, IP/PREFIX@GATEWAY, 'dhcp', 'dhcp6', 'slaac', a comma-separated list "
                 "of them, or 'none'")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_DECIMAL_RE = re.compile(r"[0-9]+")
# what Docker accepts as a container name (plus any prefix of a hex id)
_CONTAINER_RE = re.compile(r"/?[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}")
# NOTE: the kernel refuses "all" and "default" (EINVAL: they would clash with
# /proc/sys/net/*/conf/{all,default}); "ovs-system" is the kernel datapath's own device and
# "ovs-netdev" the userspace datapath's: a port or bridge of that name sits in error and
# vswitchd logs about it forever. ("br-int" is an ordinary bridge name.)
RESERVED_IFNAMES = {
    "all": "the kernel reserves it (/proc/sys/net/*/conf/all)",
    "default": "the kernel reserves it (/proc/sys/net/*/conf/default)",
    "ovs-system": "Open vSwitch's kernel datapath device has that name",
    "ovs-netdev": "Open vSwitch's userspace datapath device has that name",
}
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_CLASS_E = ipaddress.IPv4Network("240.0.0.0/4")
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


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
        """Reachable without a host route: inside the subnet, or IPv6 link-local (fe80::/10
        is on-link on every interface, so ``via fe80::1 dev IFNAME`` needs nothing more)."""
        gw = self.gateway
        return gw is None or gw in self.interface.network or (gw.version == 6 and gw.is_link_local)

    def __str__(self) -> str:
        text = self.interface.with_prefixlen
        return f"{text}@{self.gateway}" if self.gateway else text


# Dynamic address modes and the address family each one configures. "dhcp" is DHCPv4; later
# modes (e.g. "dhcp6", "slaac") add themselves here.
DYNAMIC_MODES: dict[str, int] = {"dhcp": 4, "dhcp6": 6, "slaac": 6}
# Modes whose family's default route comes from router advertisements (a static gateway of
# that family would be a second one).
RA_MODES = frozenset({"dhcp6", "slaac"})


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


def _q(text: str) -> str:
    """TEXT in double quotes for a message; repr() when it holds control characters, so an
    error stays one line and no terminal escape gets through."""
    return f'"{text}"' if text.isprintable() else repr(text)


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
    for mode in sorted(dynamic):
        version = DYNAMIC_MODES[mode]
        if mode in RA_MODES:
            # NOTE: an IPv6 static address may sit next to SLAAC/DHCPv6 (a ULA, say), but
            # not a static gateway: the RA already gives the default route.
            clash = next((s for s in statics if s.version == 6 and s.gateway), None)
            if clash is not None:
                raise BadInput(f"two IPv6 gateways in {raw!r}: '{mode}' takes the default "
                               f"route from router advertisements, and {clash} gives one",
                               hint="drop the '@GATEWAY' of the static IPv6 address")
            continue
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
    """One ``IP/PREFIX[@GATEWAY]`` item of ADDRESS."""
    part = part.strip()
    if not part:
        raise BadInput("empty entry in the address list", hint=f"give {ADDRESS_FORMS}")
    addr_text, _, gw_text = part.partition("@")
    if "/" not in addr_text:
        raise BadInput(
            f'address {_q(part)} has no prefix length',
            hint="write it as IP/PREFIX, e.g. 198.51.100.18/24",
        )
    ip_text, _, prefix_text = addr_text.partition("/")
    if "%" in ip_text:
        raise BadInput(
            f"address {_q(ip_text)} in {_q(part)} has a zone",
            hint="drop the %ZONE: the address goes on the attached interface",
        )
    if not _DECIMAL_RE.fullmatch(prefix_text):
        raise BadInput(f'prefix {_q("/" + prefix_text)} in {_q(part)} is not a number',
                       hint="use a prefix length such as /24 or /64")
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        raise BadInput(f'{_q(ip_text)} is not an IPv4 or IPv6 address',
                       hint=f"give {ADDRESS_FORMS}") from None
    prefix = int(prefix_text) if len(prefix_text) <= 3 else ip.max_prefixlen + 1
    if prefix > ip.max_prefixlen or prefix < 1:
        raise BadInput(f'prefix {_q("/" + prefix_text)} is out of range for "{ip}"',
                       hint=f"use 1-{ip.max_prefixlen} for IPv{ip.version}")
    iface = ipaddress.ip_interface(f"{ip}/{prefix}")
    _check_host_address(iface, part)
    gateway: IPAddress | None = None
    if "@" in part:
        gateway = _parse_gateway(gw_text, iface, part)
    return StaticAddress(iface, gateway)


def _not_unicast(ip: IPAddress) -> str | None:
    """Why IP cannot be a host's or a router's address, or None if it can."""
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == _LIMITED_BROADCAST:
            return "the limited broadcast address"
        if ip in _CLASS_E:
            return "in 240.0.0.0/4 (class E, reserved; Linux will not route it)"
        if ip in _THIS_NETWORK:
            return 'in 0.0.0.0/8 ("this network", never a host\'s address)'
    return None


def _mapped_hint(ip: IPAddress, prefix: int | None = None) -> str | None:
    """For ``::ffff:a.b.c.d`` (IPv4-mapped): the IPv4 form to write instead."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        v4 = ip.ipv4_mapped
        if prefix is None:
            return f"write the IPv4 address {v4} itself"
        return f"write the IPv4 address itself, e.g. {v4}/{max(1, prefix - 96)}"
    return None


def _check_host_address(iface: IPInterface, part: str) -> None:
    ip = iface.ip
    mapped = _mapped_hint(ip, iface.network.prefixlen)
    if mapped:
        raise BadInput(f"address {_q(part)} is an IPv4-mapped IPv6 address", hint=mapped)
    why = _not_unicast(ip)
    if why:
        raise BadInput(f'"{ip}" in {_q(part)} cannot be a host address: it is {why}',
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
        raise BadInput(f'gateway after "@" is missing in {_q(part)}',
                       hint="write IP/PREFIX@GATEWAY")
    if "%" in text:
        raise BadInput(
            f"gateway {_q(text)} has a zone",
            hint=f"write @{_q(text.partition('%')[0])[1:-1]} without %ZONE: the gateway is "
                 "reached on the attached interface",
        )
    try:
        gw = ipaddress.ip_address(text)
    except ValueError:
        raise BadInput(f'gateway {_q(text)} is not an IP address',
                       hint="write IP/PREFIX@GATEWAY") from None
    if gw.version != iface.version:
        raise BadInput(f'gateway "{gw}" is IPv{gw.version} but "{iface}" is IPv{iface.version}',
                       hint="give a gateway of the address's own family")
    if gw == iface.ip:
        raise BadInput(f'gateway "{gw}" is the address itself', hint="give the router's address")
    mapped = _mapped_hint(gw)
    if mapped:
        raise BadInput(f"gateway {_q(text)} is an IPv4-mapped IPv6 address", hint=mapped)
    why = _not_unicast(gw)
    if why:
        raise BadInput(f'gateway "{gw}" is not a unicast address: it is {why}',
                       hint="give the router's address")
    net = iface.network
    if gw.version == 4 and net.prefixlen < 31 and gw in net:
        if gw == net.network_address:
            raise BadInput(f'gateway "{gw}" is the network address of {net}',
                           hint="give the router's address inside the subnet")
        if gw == net.broadcast_address:
            raise BadInput(f'gateway "{gw}" is the broadcast address of {net}',
                           hint="give the router's address inside the subnet")
    return gw


def parse_mac(text: str) -> str:
    """Validate an explicit MAC; returns it lower-case. ``U:TEXT`` is handled by the caller."""
    if not _MAC_RE.fullmatch(text):
        raise BadInput(f'MAC {_q(text)} is malformed',
                       hint="write six hex pairs, e.g. 02:42:c6:33:64:12")
    mac = text.lower()
    first = int(mac[:2], 16)
    if first & 1:
        raise BadInput(f'MAC {_q(text)} is a multicast address',
                       hint="the first octet must be even, e.g. 02:...")
    if mac == "00:00:00:00:00:00":
        raise BadInput(f'MAC {_q(text)} is all zeros', hint="give a unicast MAC such as 02:...")
    return mac


def parse_ifname(text: str, what: str = "interface name") -> str:
    """A Linux interface (or OVS bridge) name: 1-15 of letters, digits, ``_ . -``."""
    if not text:
        raise BadInput(f"{what} is empty", hint="give 1-15 characters: letters, digits, _ . -")
    if len(text) > 15:
        raise BadInput(f'{what} {_q(text)} is {len(text)} characters long',
                       hint="Linux allows at most 15")
    if text in (".", "..") or not _IFNAME_RE.fullmatch(text):
        raise BadInput(f'{what} {_q(text)} has characters Linux does not allow',
                       hint="use letters, digits, _ . - (no '/', ':' or spaces)")
    if text.startswith("-"):
        raise BadInput(f'{what} {_q(text)} starts with "-"',
                       hint="start it with a letter or digit (tools would read it as an option)")
    reason = RESERVED_IFNAMES.get(text)
    if reason:
        raise BadInput(f'{what} {_q(text)} is reserved: {reason}', hint="pick another name")
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
    """GUEST: ``netns:NAME``, ``pid:N`` or a Docker container name or id."""
    if not text:
        raise BadInput("guest is empty", hint="give a container name or id, netns:NAME or pid:N")
    if text.startswith("netns:"):
        name = text[len("netns:") :]
        if (not name or "/" in name or name in (".", "..") or len(name) > 255
                or not name.isprintable() or name != name.strip()):
            raise BadInput(f"network namespace name {_q(name)} is invalid",
                           hint="give netns:NAME as listed by 'ip netns'")
        return GuestSpec("netns", name)
    if text.startswith("pid:"):
        num = text[len("pid:") :]
        if not _DECIMAL_RE.fullmatch(num) or len(num) > 10 or int(num) < 1:
            raise BadInput(f"{_q(text)} is not a process id",
                           hint="give pid:N with N a positive number")
        return GuestSpec("pid", str(int(num)))
    if not _CONTAINER_RE.fullmatch(text):
        raise BadInput(f"container {_q(text)} is not a valid Docker name or id",
                       hint="give a name as 'docker ps' shows it, a container id, "
                            "netns:NAME or pid:N")
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
    # issue 11; new keys only, so older --json consumers keep working
    address_details: tuple[dict[str, object], ...] = ()  # address, origin, lease times
    vlan_mode: str | None = None  # access | trunk | native-untagged (None: OVS default)
    trunks: tuple[int, ...] = ()
    rate_limit: int | None = None  # Mbit/s (OVS ingress policing)
    burst: int | None = None  # KB

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
            "ovn": {k[4:]: v for k, v in self.extra.items() if k.startswith("ovn_")} or None,
            "address_details": [dict(d) for d in self.address_details],
            "vlan_mode": self.vlan_mode,
            "trunks": list(self.trunks),
            "rate_limit": self.rate_limit,
            "burst": self.burst,
        }


# ----- port features: trunks, rate limits (issue 11) ---------------------------------------
MAX_RATE_MBPS = 100_000  # 100 Gbit/s; OVS takes kbps in a 32-bit column
MAX_BURST_KB = 10_000_000


def parse_trunks(text: str) -> tuple[int, ...]:
    """``10,20,30`` or ranges ``100-110``: the VLANs a trunk port carries, sorted, unique."""
    raw = text.strip()
    if not raw:
        raise BadInput("--trunk is empty", hint="give VLAN tags such as 10,20,30 or 100-110")
    tags: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise BadInput(f'trunk VLAN "{part}" in "{raw}" is not a number or a range',
                           hint="give VLAN tags such as 10,20,30 or 100-110")
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise BadInput(f'trunk VLAN range "{part}" ends before it starts',
                           hint="write LOW-HIGH, e.g. 100-110")
        for tag in (lo, hi):
            if not 1 <= tag <= 4094:
                raise BadInput(f'trunk VLAN {tag} in "{raw}" is out of range',
                               hint="use VLAN tags from 1 to 4094")
        if lo in tags and not dash:
            raise BadInput(f'trunk VLAN {lo} is given twice in "{raw}"', hint="list it once")
        tags.update(range(lo, hi + 1))
    return tuple(sorted(tags))


def format_trunks(tags: tuple[int, ...]) -> str:
    return ",".join(str(t) for t in tags)


def parse_rate(text: str, what: str = "--rate-limit") -> int:
    """A rate in Mbit/s (a whole number, 1..100000)."""
    raw = text.strip().lower().removesuffix("mbps").removesuffix("mbit").strip()
    if not raw.isdigit():
        raise BadInput(f'{what} "{text}" is not a whole number of Mbit/s',
                       hint=f"e.g. {what} 100 (Mbit/s)")
    value = int(raw)
    if not 1 <= value <= MAX_RATE_MBPS:
        raise BadInput(f"{what} {value} is out of range",
                       hint=f"use 1 to {MAX_RATE_MBPS} Mbit/s")
    return value


def parse_burst(text: str) -> int:
    """A burst size in kilobytes (1..10000000)."""
    raw = text.strip().lower().removesuffix("kb").strip()
    if not raw.isdigit():
        raise BadInput(f'--burst "{text}" is not a whole number of kilobytes',
                       hint="e.g. --burst 1000 (KB)")
    value = int(raw)
    if not 1 <= value <= MAX_BURST_KB:
        raise BadInput(f"--burst {value} is out of range", hint=f"use 1 to {MAX_BURST_KB} KB")
    return value
