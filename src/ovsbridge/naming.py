"""Deterministic names and MAC addresses, so a re-run finds the same devices.

Interface names are hash-based and at most 15 characters (IFNAMSIZ - 1); MACs are locally
administered unicast. No PID, clock or random value goes into a name.
"""

from __future__ import annotations

import hashlib

IFNAMSIZ_MAX = 15
HOST_PREFIX = "ovb"
PEER_PREFIX = "ovp"
OWNER = "ovsbridge"


def _digest(*parts: str) -> str:
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
    """MAC as pipework's ``U:TEXT`` derives it: 02 then md5 of ``echo TEXT``'s first 10 hex."""
    digest = hashlib.md5((text + "\n").encode()).hexdigest()
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


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
K_REQUEST = "ovsbridge.request"  # the AttachRequest as asked (JSON), to rebuild it on rollback
