"""DNS names and name servers as data: hostnames, domain names, search lists, server addresses.

Pure and side-effect free. What a DHCP server (or a state file, or a user) hands us is checked
here before it reaches a resolv.conf, a DHCP packet or a log line: RFC 1123 labels (letters,
digits, inner hyphens, at most 63 characters), names of at most 253 characters whose last
label is not all digits, name servers that are real unicast IP addresses. A value with a
newline or any other control character is never a valid name, so it can never add a line of
its own to resolv.conf. ``clean_*`` drop what is not valid (the caller logs it);
``parse_hostname`` refuses it (exit 2).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from ovsbridge.errors import BadInput

MAX_NAME = 253  # RFC 1035 2.3.4, without the trailing dot
MAX_LABEL = 63
MAX_SEARCH = 6  # glibc's historical limit of the search list
MAX_SEARCH_CHARS = 256  # and of the search line
MAX_NAMESERVERS = 3  # glibc's MAXNS: further nameserver lines are ignored

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_label(text: str) -> bool:
    """One RFC 1123 label: letters, digits and inner hyphens, 1-63 characters."""
    return len(text) <= MAX_LABEL and _LABEL.fullmatch(text) is not None


def is_domain(text: str) -> bool:
    """A DNS name of RFC 1123 labels (no trailing dot), at most 253 characters, whose last
    label is not all digits (RFC 3696 2: it would read as an IPv4 address)."""
    if not text or len(text) > MAX_NAME:
        return False
    labels = text.split(".")
    return all(is_label(label) for label in labels) and not labels[-1].isdigit()


def is_hostname(text: str) -> bool:
    """A hostname for DHCP option 12: one label, or a fully qualified name."""
    return is_domain(text)


def _shown(value: object) -> str:
    text = str(value)
    return f'"{text}"' if text.isprintable() else repr(text)


def parse_hostname(text: str, what: str = "--hostname") -> str:
    """A hostname the user gave (sent to the DHCP server as option 12)."""
    if not is_hostname(text):
        raise BadInput(
            f"{what} {_shown(text)} is not a valid hostname",
            hint="use letters, digits and inner hyphens (RFC 1123), at most 63 per label",
        )
    return text


def clean_domain(value: object) -> str | None:
    """VALUE as a domain name (lower case, no trailing dot), or None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    return text.lower() if is_domain(text) else None


def clean_search(values: Iterable[object]) -> tuple[str, ...]:
    """The valid domains of VALUES, without repeats, within resolv.conf's limits."""
    found: list[str] = []
    length = len("search")
    for value in values:
        domain = clean_domain(value)
        if domain is None or domain in found:
            continue
        if len(found) == MAX_SEARCH or length + 1 + len(domain) > MAX_SEARCH_CHARS:
            break
        found.append(domain)
        length += 1 + len(domain)
    return tuple(found)


def clean_nameserver(value: object) -> str | None:
    """VALUE as a name server address (IPv4 or IPv6, unicast, no zone), or None."""
    if not isinstance(value, str) or not value.isascii() or "%" in value:
        return None
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if ip.is_multicast or ip.is_unspecified:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and (
        ip == ipaddress.IPv4Address("255.255.255.255") or ip in ipaddress.ip_network("0.0.0.0/8")
    ):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and (ip.is_link_local or ip.ipv4_mapped):
        return None  # a link-local server needs a zone, which resolv.conf cannot name here
    return str(ip)


def clean_nameservers(values: Iterable[object], limit: int = MAX_NAMESERVERS) -> tuple[str, ...]:
    """The valid name servers of VALUES, without repeats, at most LIMIT."""
    found: list[str] = []
    for value in values:
        server = clean_nameserver(value)
        if server is not None and server not in found:
            found.append(server)
        if len(found) == limit:
            break
    return tuple(found)


__all__ = [
    "MAX_NAMESERVERS",
    "clean_domain",
    "clean_nameserver",
    "clean_nameservers",
    "clean_search",
    "is_domain",
    "is_hostname",
    "is_label",
    "parse_hostname",
]
