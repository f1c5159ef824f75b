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
