"""A container's resolv.conf, fed by several sources at once (DHCPv4, DHCPv6, RDNSS).

Each source (``dhcp4``, ``dhcp6``, ``slaac``) records what it contributes in a comment line
of the file itself (``# ovsbridge dhcp6: dns=... search=...``), so a DHCPv4 renewal does not
wipe the DHCPv6 servers and the file needs no state elsewhere. The nameserver and search
lines are rebuilt from all recorded sources (IPv4 sources first, at most three servers, as
glibc reads no more); every other line the image or Docker wrote is kept.

Side effects: ``write`` rewrites the file in place (same inode, see NOTE). Never the host's.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from typing import Final

from ovsbridge.errors import BadInput, OperationFailed

HOST_RESOLV_CONF: Final = "/etc/resolv.conf"
SOURCES: Final = ("dhcp4", "dhcp6", "slaac")
MAX_NAMESERVERS: Final = 3
MAX_SEARCH: Final = 6
_MARK_RE = re.compile(r"^# ovsbridge (\w+): dns=(\S*) search=(\S*)")
_NAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*$"
)


def _clean(dns: Sequence[str], search: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """NOTE: values come from the network (DHCP, RAs): only IP addresses and plain host
    names may reach the file, so a hostile server cannot inject lines or options."""
    servers = []
    for item in dns:
        try:
            servers.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            continue
    names = [str(n).strip().rstrip(".") for n in search]
    return tuple(servers), tuple(n for n in names if _NAME_RE.match(n))


def is_host_resolv_conf(path: str) -> bool:
    real = os.path.realpath(path)
    if real in (os.path.realpath(HOST_RESOLV_CONF), HOST_RESOLV_CONF):
        return True
    try:
        return os.path.samefile(path, HOST_RESOLV_CONF)
    except OSError:
        return False


def _split(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def render(
    old: str, source: str, dns: Sequence[str], search: Sequence[str], note: str = ""
) -> str:
    """OLD with SOURCE's contribution set to DNS/SEARCH (empty both: SOURCE withdrawn)."""
    if source not in SOURCES:
        raise BadInput(f"unknown resolv.conf source {source!r}")
    recorded: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    kept: list[str] = []
    for line in old.splitlines():
        mark = _MARK_RE.match(line)
        if mark:
            recorded[mark.group(1)] = _clean(_split(mark.group(2)), _split(mark.group(3)))
            continue
        if line.startswith("# ovsbridge"):
            continue  # a note of ours, or the single-source header of older versions
        if line.split()[:1] in (["nameserver"], ["search"], ["domain"]):
            continue
        kept.append(line)
    dns, search = _clean(dns, search)
    if dns or search:
        recorded[source] = (dns, search)
    else:
        recorded.pop(source, None)
    if not recorded:
        return "\n".join(kept).rstrip("\n") + "\n" if kept else ""
    servers: list[str] = []
    domains: list[str] = []
    ours: list[str] = []
    for name in SOURCES:
        if name not in recorded:
            continue
        src_dns, src_search = recorded[name]
        ours.append(f"# ovsbridge {name}: dns={','.join(src_dns)} search={','.join(src_search)}")
        servers.extend(s for s in src_dns if s not in servers)
        domains.extend(d for d in src_search if d not in domains)
    if note:
        ours.append(f"# ovsbridge: {note}")
    if domains:
        ours.append("search " + " ".join(domains[:MAX_SEARCH]))
    ours.extend(f"nameserver {s}" for s in servers[:MAX_NAMESERVERS])
    return "\n".join(ours + kept).rstrip("\n") + "\n"


def update(
    path: str, source: str, dns: Sequence[str], search: Sequence[str], note: str = ""
) -> None:
    """Set SOURCE's servers and search domains in the container's resolv.conf at PATH."""
    if is_host_resolv_conf(path):
        raise BadInput(
            f"refusing to write {path}: it is the host's resolv.conf",
            hint="give the container's own resolv.conf (Docker's ResolvConfPath)",
        )
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            old = fh.read()
    except FileNotFoundError:
        old = ""
    except OSError as exc:
        raise OperationFailed(f"cannot read {path}: {exc.strerror}") from exc
    new = render(old, source, dns, search, note)
    if new == old:
        return
    # NOTE: Docker bind-mounts ResolvConfPath into the container, so a rename onto it would
    # never be seen inside (the mount keeps the old inode). The new text goes into the same
    # inode in one write(), then the file is cut to length: a reader sees the old file or
    # the new one (a shorter new text leaves a tail only for the instant before ftruncate).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            data = new.encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationFailed(f"cannot write {path}: {exc.strerror}") from exc
