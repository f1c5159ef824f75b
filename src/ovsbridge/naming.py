"""Deterministic names and MAC addresses, so a re-run finds the same devices.

Interface names are hash-based and at most 15 characters (IFNAMSIZ - 1); MACs are locally
administered unicast. No PID, clock or random value goes into a name.
"""

from __future__ import annotations

import re

IFNAMSIZ_MAX = 15
HOST_PREFIX = "ovb"
PEER_PREFIX = "ovp"
OWNER = "ovsbridge"


def _digest(*parts: str) -> str:
    import hashlib  # NOTE: here, not at the top: the CLI's daemon path never hashes

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def host_ifname(guest_key: str, ifname: str) -> str:
    """Host end of the veth for GUEST's interface IFNAME: ``ovb`` + 11 hex chars."""
    return HOST_PREFIX + _digest(guest_key, ifname)[:11]


def peer_tmp_ifname(host_name: str) -> str:
    """Temporary name of the guest end while it is created (renamed inside the netns)."""
    return PEER_PREFIX + host_name[len(HOST_PREFIX) :]


def stable_mac(guest_key: str, ifname: str) -> str:
    """A locally administered unicast MAC derived from the guest and ifname."""
    raw = bytearray(bytes.fromhex(_digest("mac", guest_key, ifname)[:12]))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def pipework_mac(text: str) -> str:
    """MAC as pipework's ``U:TEXT`` derives it: ``echo $macunique | md5sum``, 02 + 10 hex.

    The text goes through what dash (pipework's /bin/sh) does to it: unquoted, it is split
    into words on IFS (space, tab, newline; so runs of whitespace collapse and leading or
    trailing whitespace vanishes), and dash's echo joins the words with one space, treats a
    first word of exactly ``-n`` as "no newline" and expands backslash escapes (see
    ``dash_echo``). Glob characters are taken literally, as when no file matches them.
    """
    import hashlib

    digest = hashlib.md5(dash_echo(_IFS_RUN.split(text))).hexdigest()
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


_IFS_RUN = re.compile(r"[ \t\n]+")
_ESCAPES = {"\\": 0x5C, "a": 0x07, "b": 0x08, "e": 0x1B, "f": 0x0C, "n": 0x0A, "r": 0x0D,
            "t": 0x09, "v": 0x0B}
_OCTAL = "01234567"


def dash_echo(words: list[str]) -> bytes:
    """The bytes dash 0.5.12's builtin ``echo WORDS...`` writes (src/bltin/printf.c).

    NOTE: dash's echo takes no option but a first argument of exactly ``-n``; it always
    expands escapes: ``\\a \\b \\e \\f \\n \\r \\t \\v \\\\``, ``\\0NNN`` and ``\\NNN`` (up to three
    octal digits, the value taken modulo 256), ``\\c`` ends all output (no newline either);
    a backslash before anything else stays a backslash.
    """
    args = [w for w in words if w]
    end = b"\n"
    if args and args[0] == "-n":
        args, end = args[1:], b""
    out = bytearray()
    for index, word in enumerate(args):
        raw = word.encode("utf-8", "surrogateescape")
        if _echo_word(raw, out):
            return bytes(out)  # \c: stop here
        if index < len(args) - 1:
            out += b" "
    return bytes(out + end)


def _echo_word(raw: bytes, out: bytearray) -> bool:
    """Append RAW with dash's escapes expanded; True when a ``\\c`` stopped the output."""
    i = 0
    while i < len(raw):
        ch = raw[i]
        i += 1
        if ch != 0x5C or i >= len(raw):  # a trailing backslash is printed as itself
            out.append(ch)
            continue
        nxt = chr(raw[i])
        if nxt == "c":
            return True
        if nxt == "0" and i + 1 < len(raw) and chr(raw[i + 1]) in _OCTAL:
            i += 1  # \0NNN: the 0 only introduces the digits
            nxt = chr(raw[i])
        if nxt in _OCTAL:
            value, digits = 0, 0
            while i < len(raw) and digits < 3 and chr(raw[i]) in _OCTAL:
                value = value * 8 + raw[i] - 0x30
                i += 1
                digits += 1
            out.append(value & 0xFF)
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 1
        else:
            out.append(0x5C)  # unknown escape: the backslash stays, the next byte follows
    return False


# The identity every host veth end carries in its ifalias: whose it is, and whether the
# attachment is complete. Links are recognised by it, never by their name alone.
ALIAS_BUILDING = "building"
ALIAS_READY = "ready"


def link_alias(guest_key: str, ifname: str, state: str) -> str:
    """``ovsbridge STATE IFNAME GUEST_KEY`` (ifalias holds up to 255 bytes; the key goes
    last, so a netns name with spaces still parses)."""
    return f"{OWNER} {state} {ifname} {guest_key}"


def parse_link_alias(alias: str | None) -> tuple[str, str, str] | None:
    """(state, guest key, ifname) from an ifalias written by ``link_alias``, else None."""
    parts = (alias or "").split(" ", 3)
    if len(parts) != 4 or parts[0] != OWNER or parts[1] not in (ALIAS_BUILDING, ALIAS_READY):
        return None
    return parts[1], parts[3], parts[2]


# external_ids written on the OVS Interface of every port ovsbridge creates. Ports are found
# by these tags, never by parsing names.
K_OWNER = "ovsbridge.owner"  # always OWNER
K_GUEST_KIND = "ovsbridge.guest_kind"  # docker | netns | pid
K_CONTAINER_ID = "ovsbridge.container_id"  # container id, netns name or pid
K_CONTAINER_NAME = "ovsbridge.container_name"
K_IFNAME = "ovsbridge.ifname"  # interface name inside the guest
K_NETNS_INODE = "ovsbridge.netns_inode"
K_PID = "ovsbridge.pid"
K_MAC = "ovsbridge.mac"
K_MTU = "ovsbridge.mtu"
K_ADDRESSES = "ovsbridge.addresses"  # comma-separated, as configured
K_MODE = "ovsbridge.mode"  # static | dhcp | none
K_CONFIG = "ovsbridge.config"  # fingerprint of the requested configuration
K_CREATED_AT = "ovsbridge.created_at"  # unix time, seconds

# Tags other tools write, under the keys they really write (read from their source and from
# running them: pipework 9ba97f1 and Debian's ovs-docker). pipework sets them on the
# Interface; ovs-docker too.
PW_INTERFACE = "pipework.interface"  # the host end of the veth
PW_BRIDGE = "pipework.bridge"
PW_CONTAINER_ID = "pipework.containerid"  # full id (docker inspect .ID)
PW_CONTAINER_NAME = "pipework.containername"  # docker's .Name: with a leading "/"
PW_NSPID = "pipework.nspid"  # the container's pid when pipework ran
PW_VLAN = "pipework.vlan"
OD_CONTAINER_ID = "container_id"  # what the ovs-docker user typed: a name or an id
OD_CONTAINER_IFACE = "container_iface"  # the interface name inside the container


K_REQUEST = "ovsbridge.request"  # the AttachRequest as asked (JSON), to rebuild it on rollback
