"""The one request path: string fields from any front end become a validated AttachRequest.

The CLI, Docker labels, a bulk file and a pipework command line all hand ``build_attach_request``
a mapping of plain fields (strings, or ints/bools where a front end already has them); it
returns a frozen, serialisable ``AttachRequest`` (``to_dict``/``from_dict``), which is what the
CLI sends to the daemon. ``expand_bulk`` turns one set of fields and several guests into one
request per guest (an address range hands out consecutive addresses). Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ovsbridge import naming
from ovsbridge.errors import BadInput
from ovsbridge.model import (
    AddressPlan,
    GuestSpec,
    StaticAddress,
    check_mtu,
    check_vlan,
    parse_address_plan,
    parse_burst,
    parse_guest,
    parse_ifname,
    parse_mac,
    parse_rate,
    parse_trunks,
)

T = TypeVar("T")
DEFAULT_IFNAME = "eth1"
DEFAULT_DHCP_TIMEOUT = 30.0
DEFAULT_RA_TIMEOUT = 15.0
IPV6_MIN_MTU = 1280
# Every field a front end may give, with its name in messages (the CLI's option).
FIELDS: dict[str, str] = {
    "bridge": "bridge name",
    "guest": "guest",
    "address": "address",
    "ifname": "--ifname",
    "mac": "--mac",
    "vlan": "--vlan",
    "mtu": "--mtu",
    "host_ifname": "--host-ifname",
    "create_bridge": "--create-bridge",
    "replace": "--replace",
    "dhcp_timeout": "--dhcp-timeout",
    "hostname": "--hostname",
    "default_route": "--default-route",
    "dns": "--dns",
    "ovn_switch": "--ovn-switch",
    "ovn_port": "--ovn-port",
    "ra_timeout": "--ra-timeout",
    "trunk": "--trunk",
    "rate_limit": "--rate-limit",
    "burst": "--burst",
}
_RANGE_RE = re.compile(r"^(?P<first>[^-/@]+)-(?P<last>[^/@]+)(?P<rest>/.*)$")


@dataclass(frozen=True)
class AttachRequest:
    """One guest interface on one bridge, as asked (never values derived from the bridge)."""

    bridge: str
    guest: GuestSpec
    plan: AddressPlan
    ifname: str = DEFAULT_IFNAME
    mac: str | None = None  # explicit MAC (U:TEXT already resolved), None: the stable default
    vlan: int | None = None
    mtu: int | None = None  # None: the bridge's
    host_ifname: str | None = None
    create_bridge: bool = False
    replace: bool = False
    dhcp_timeout: float = DEFAULT_DHCP_TIMEOUT
    hostname: str | None = None
    default_route: bool = True
    dns: bool = True
    ovn_switch: str | None = None  # OVN: create the logical port on this logical switch
    ovn_port: str | None = None  # OVN: bind this existing logical port
    ra_timeout: float = DEFAULT_RA_TIMEOUT  # slaac/dhcp6: wait for the RA this long
    trunk: tuple[int, ...] = ()  # VLANs of a trunk port; with vlan: its native VLAN
    rate_limit: int | None = None  # Mbit/s, OVS ingress policing on the container's port
    burst: int | None = None  # KB, with rate_limit

    def to_dict(self) -> dict[str, Any]:
        """Plain fields; ``build_attach_request(req.to_dict()) == req``."""
        return {
            "bridge": self.bridge, "guest": str(self.guest), "address": str(self.plan),
            "ifname": self.ifname, "mac": self.mac, "vlan": self.vlan, "mtu": self.mtu,
            "host_ifname": self.host_ifname, "create_bridge": self.create_bridge,
            "replace": self.replace, "dhcp_timeout": self.dhcp_timeout,
            "hostname": self.hostname, "default_route": self.default_route, "dns": self.dns,
            "ovn_switch": self.ovn_switch, "ovn_port": self.ovn_port,
            "ra_timeout": self.ra_timeout, "trunk": ",".join(map(str, self.trunk)) or None,
            "rate_limit": self.rate_limit, "burst": self.burst,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttachRequest:
        return build_attach_request(data)

    def config(self) -> dict[str, Any]:
        """What defines the attachment (compared for idempotency): the request as asked,
        without the per-run switches (replace, create_bridge, timeouts)."""
        config: dict[str, Any] = {
            "bridge": self.bridge, "address": str(self.plan), "mac": self.mac,
            "vlan": self.vlan, "mtu": self.mtu, "host_ifname": self.host_ifname,
        }
        # NOTE: new keys only when set, so attachments recorded before they existed keep
        # their fingerprint (a repeat attach stays a no-op).
        if self.trunk:
            config["trunk"] = list(self.trunk)
        if self.rate_limit is not None:
            config.update(rate_limit=self.rate_limit, burst=self.burst)
        if self.plan.dynamic:
            config.update(hostname=self.hostname, default_route=self.default_route,
                          dns=self.dns)
        if self.ovn_switch or self.ovn_port:
            config.update(ovn_switch=self.ovn_switch, ovn_port=self.ovn_port)
        return config

    def fingerprint(self) -> str:
        return json.dumps(self.config(), sort_keys=True, separators=(",", ":"))


def build_attach_request(fields: Mapping[str, Any]) -> AttachRequest:
    """Validate FIELDS (see ``FIELDS``) into an AttachRequest; BadInput names the bad one."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise BadInput(f"unknown request field {unknown[0]!r}",
                       hint=f"use {', '.join(FIELDS)}")
    for required in ("bridge", "guest", "address"):
        if _text(fields, required) is None:
            raise BadInput(f"{FIELDS[required]} is missing", hint="see 'ovsbridge attach --help'")
    def field(name: str, parse: Callable[[], T]) -> T:
        """PARSE one field; its BadInput records which field was bad (``fields['field']``)."""
        try:
            return parse()
        except BadInput as exc:
            exc.fields.setdefault("field", name)
            raise

    plan = field("address", lambda: parse_address_plan(_req_text(fields, "address")))
    mtu = field("mtu", lambda: check_mtu(_int(fields, "mtu")))
    if mtu is not None and mtu < IPV6_MIN_MTU and 6 in plan.families:
        raise BadInput(f"MTU {mtu} is too small for IPv6", hint=f"IPv6 needs an MTU of at least "
                       f"{IPV6_MIN_MTU}; give a larger --mtu or IPv4 addresses only",
                       field="mtu")
    host = _text(fields, "host_ifname")
    rate_text, burst_text = _text(fields, "rate_limit"), _text(fields, "burst")
    rate_limit = field("rate_limit", lambda: parse_rate(rate_text) if rate_text else None)
    burst = field("burst", lambda: parse_burst(burst_text) if burst_text else None)
    if burst is not None and rate_limit is None:
        raise BadInput("--burst needs --rate-limit", hint="e.g. --rate-limit 100 --burst 1000",
                       field="burst")
    trunk = field("trunk", lambda: _trunk(fields))
    if trunk and fields.get("vlan") in (None, "") and (plan.statics or plan.dynamic):
        raise BadInput(f"a trunk port without a native VLAN carries no untagged traffic, "
                       f"so '{plan}' cannot work on it",
                       hint="give --vlan N (the native VLAN, untagged), or address 'none' "
                            "and VLAN subinterfaces inside the guest", field="trunk")
    return AttachRequest(
        bridge=field("bridge", lambda: parse_ifname(_req_text(fields, "bridge"), "bridge name")),
        guest=field("guest", lambda: parse_guest(_req_text(fields, "guest"))),
        plan=plan,
        ifname=field("ifname", lambda: parse_ifname(_text(fields, "ifname") or DEFAULT_IFNAME,
                                                    "--ifname")),
        mac=field("mac", lambda: _mac(_text(fields, "mac"))),
        vlan=field("vlan", lambda: check_vlan(_int(fields, "vlan"))),
        mtu=mtu,
        host_ifname=field("host_ifname",
                          lambda: parse_ifname(host, "--host-ifname") if host else None),
        create_bridge=field("create_bridge", lambda: _bool(fields, "create_bridge", False)),
        replace=field("replace", lambda: _bool(fields, "replace", False)),
        dhcp_timeout=field("dhcp_timeout",
                           lambda: _positive(fields, "dhcp_timeout", DEFAULT_DHCP_TIMEOUT)),
        hostname=field("hostname", lambda: _hostname(fields)),
        default_route=field("default_route", lambda: _bool(fields, "default_route", True)),
        dns=field("dns", lambda: _bool(fields, "dns", True)),
        ovn_switch=field("ovn_switch", lambda: _ovn_name(fields, "ovn_switch")),
        ovn_port=field("ovn_port", lambda: _ovn_name(fields, "ovn_port")),
        ra_timeout=field("ra_timeout",
                         lambda: _positive(fields, "ra_timeout", DEFAULT_RA_TIMEOUT)),
        trunk=trunk,
        rate_limit=rate_limit,
        burst=burst,
    )


def expand_bulk(fields: Mapping[str, Any], guests: Sequence[str]) -> list[AttachRequest]:
    """One request per guest: FIELDS' address for each, or the next address of a range.

    A range is ``FIRST-LAST/PREFIX[@GW]`` where LAST is a whole address or just the last
    octet (IPv4) or group (IPv6): ``198.51.100.10-49/24@198.51.100.1``. A range too small
    for the guests, or one static address for several guests, is BadInput before anything
    is touched.
    """
    if not guests:
        raise BadInput("no guest given", hint="give one or more containers before the address")
    address = _req_text(fields, "address")
    seen: set[str] = set()
    for guest in guests:
        if guest in seen:
            raise BadInput(f'guest "{guest}" is given twice', hint="list each guest once")
        seen.add(guest)
    ranged = _parse_range(address)
    if ranged is None:
        base = build_attach_request({**fields, "guest": guests[0]})
        if base.plan.statics and len(guests) > 1:
            raise BadInput(f'one static address "{address}" for {len(guests)} guests',
                           hint="give a range such as 198.51.100.10-49/24, or one guest")
        return [replace(base, guest=parse_guest(g)) for g in guests]
    first, count, rest = ranged
    if count < len(guests):
        raise BadInput(f'range "{address}" has {count} address(es) for {len(guests)} guests',
                       hint="widen the range or give fewer guests")
    requests = []
    for i, guest in enumerate(guests):
        requests.append(build_attach_request(
            {**fields, "guest": guest, "address": f"{first + i}{rest}"}))
    return requests


def _parse_range(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, str]\
        | None:
    match = _RANGE_RE.match(text.strip())
    if match is None or "," in text:
        return None
    first_text, last_text, rest = match["first"], match["last"], match["rest"]
    try:
        first = ipaddress.ip_address(first_text)
    except ValueError:
        raise BadInput(f'range start "{first_text}" is not an IP address',
                       hint="write FIRST-LAST/PREFIX, e.g. 198.51.100.10-49/24") from None
    last = _range_end(first, last_text, text)
    if int(last) < int(first):
        raise BadInput(f'range "{text}" ends before it starts',
                       hint="write FIRST-LAST/PREFIX with LAST >= FIRST")
    # Every address of the range must be a valid host address of the subnet.
    for probe in (first, last):
        parse_static(f"{probe}{rest}")
    return first, int(last) - int(first) + 1, rest


def _range_end(first: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str,
               whole: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    bad = BadInput(f'range end "{text}" in "{whole}" is not an address or a last '
                   f'{"octet" if first.version == 4 else "group"}',
                   hint="write FIRST-LAST/PREFIX, e.g. 198.51.100.10-49/24")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if first.version == 4:
        if not text.isdigit() or int(text) > 255:
            raise bad
        head = str(first).rsplit(".", 1)[0]
        return ipaddress.ip_address(f"{head}.{int(text)}")
    if not re.fullmatch(r"[0-9a-fA-F]{1,4}", text):
        raise bad
    return ipaddress.ip_address((int(first) & ~0xFFFF) | int(text, 16))


def parse_static(text: str) -> StaticAddress:
    from ovsbridge.model import parse_static as parse

    return parse(text)


def _hostname(fields: Mapping[str, Any]) -> str | None:
    from ovsbridge.dnsname import parse_hostname

    value = _text(fields, "hostname")
    return parse_hostname(value) if value is not None else None


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return value if value != "" or name in ("bridge", "guest", "address") else None


def _req_text(fields: Mapping[str, Any], name: str) -> str:
    value = _text(fields, name)
    if value is None:
        raise BadInput(f"{FIELDS[name]} is missing", hint="see 'ovsbridge attach --help'")
    return value


def _int(fields: Mapping[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadInput(f"{FIELDS[name]} must be a whole number, not {value}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 10)
    except ValueError:
        raise BadInput(f'{FIELDS[name]} "{value}" is not a whole number',
                       hint=f"give {FIELDS[name]} as a number") from None


def _bool(fields: Mapping[str, Any], name: str, default: bool) -> bool:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadInput(f'{FIELDS[name]} "{value}" is not true or false', hint="give true or false")


def _positive(fields: Mapping[str, Any], name: str, default: float) -> float:
    value = fields.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f'{FIELDS[name]} "{value}" is not a number',
                       hint=f"e.g. {FIELDS[name]} 30") from None
    if not number > 0 or number != number or number == float("inf"):
        raise BadInput(f"{FIELDS[name]} must be positive, not {value}",
                       hint=f"e.g. {FIELDS[name]} 30")
    return number


def _ovn_name(fields: Mapping[str, Any], name: str) -> str | None:
    value = _text(fields, name)
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}", value):
        raise BadInput(f'{FIELDS[name]} "{value}" is not a valid OVN name',
                       hint="use letters, digits, '.', '_' and '-' (at most 63)")
    return value
def _trunk(fields: Mapping[str, Any]) -> tuple[int, ...]:
    value = fields.get("trunk")
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return parse_trunks(str(value))


def _mac(value: str | None) -> str | None:
    """An explicit MAC, or ``U:TEXT`` resolved to pipework's MAC for TEXT."""
    if value is None:
        return None
    if value[:2].upper() == "U:":
        text = value[2:]
        if not text:
            raise BadInput("--mac U: needs text after it", hint="e.g. --mac U:web1")
        if "@" in text:
            raise BadInput(f'--mac "{value}" carries a VLAN ("@...")',
                           hint="give the VLAN with --vlan (pipework's MAC@VLAN form is "
                                "'ovsbridge pipework')")
        return naming.pipework_mac(text)
    return parse_mac(value)
