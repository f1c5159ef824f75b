"""pipework's command line, read exactly as the pipework script (jpetazzo/pipework 9ba97f1) does.

Pure: no I/O. What the script learns from the host (does the first argument name an OVS
bridge, a Linux bridge, a NIC; which interface has a MAC) comes in through ``HostFacts``.
``parse`` returns what to do: an attach as the plain string fields of the one request
builder (``request.build_attach_request``), a ``--wait``, or a ``route``/``rule``/``tc``
command for a guest's netns. What pipework does that is not about OVS is refused with the
alternative named (``BadInput``, exit 2).

The positional grammar is pipework's own, including its quirks: ``--wait`` is not shifted
(so ``--wait -i IF`` works), ``-i``, ``-l`` and ``-a`` are recognised only in that order and
only right after the first argument, ``MAC@VLAN`` splits at the first ``@`` (the VLAN ends at
the next one), and the ``U:`` text is what follows the first ``:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ovsbridge import naming
from ovsbridge.errors import BadInput, NotFound

HostKind = Literal["ovs-bridge", "linux-bridge", "ipoib", "nic"]

SYNTAX = (
    "pipework [--wait] BRIDGE [-i IF] [-l HOSTIF] [-a 4|6] GUEST "
    "IP/PREFIX[@GW]|dhcp[:OPTS]|udhcpc[-f][:OPTS]|dhclient[-f][:OPTS]|dhcpcd[:OPTS]|0/0 "
    "[MAC|U:TEXT][@VLAN]; pipework route|rule|tc GUEST ARGS...; pipework --wait [-i IF]"
)
CLIENTS = ("udhcpc", "dhclient", "dhcpcd")
_IFS = re.compile(r"[ \t\n]+")


class HostFacts(Protocol):
    """What pipework reads from the host before it decides."""

    def kind_of(self, name: str) -> HostKind | None: ...  # None: no such device or bridge
    def interface_with_mac(self, mac: str) -> str | None: ...  # an OVS bridge if one has it


@dataclass(frozen=True)
class Attach:
    """An attach: FIELDS for the request builder, plus what the front end reports."""

    fields: dict[str, str]
    guest: str  # as typed: a container name or id, or a pid
    client: str | None = None  # dhcp, udhcpc, dhclient, dhcpcd (None: static or 0/0)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wait:
    """``pipework --wait [-i IF]``: inside a container, wait for IF to appear."""

    ifname: str


@dataclass(frozen=True)
class NetnsCommand:
    """``pipework route|rule|tc GUEST ARGS``: ``ip route ARGS`` (or rule, or ``tc``) in the
    guest's netns."""

    tool: Literal["route", "rule", "tc"]
    guest: str
    args: tuple[str, ...] = field(default=())

    @property
    def argv(self) -> tuple[str, ...]:
        return ("tc", *self.args) if self.tool == "tc" else ("ip", self.tool, *self.args)


Parsed = Attach | Wait | NetnsCommand


def parse(argv: list[str] | tuple[str, ...], host: HostFacts) -> Parsed:
    args = list(argv)
    wait = bool(args) and args[0] == "--wait"
    if args and args[0] == "--direct-phys":
        raise BadInput("--direct-phys moves a physical NIC into the container, which is not "
                       "an Open vSwitch feature",
                       hint="move it yourself: ip link set DEV netns $(docker inspect -f "
                            "'{{.State.Pid}}' GUEST); or put the NIC in an OVS bridge with "
                            "'ovsbridge setup-bridge DEV' and attach the guest to it")

    def arg(n: int) -> str:
        return args[n - 1] if len(args) >= n else ""

    def shift_option(flag: str) -> str | None:
        if arg(2) != flag:
            return None
        value = arg(3)
        del args[1:3]
        return value

    bridge = arg(1)
    ifname = shift_option("-i")
    host_ifname = shift_option("-l")
    family = shift_option("-a")
    guest, address, macaddr = arg(2), arg(3), arg(4)

    if wait:
        return Wait(ifname or "eth1")
    if not address:
        raise BadInput("pipework needs a guest and an address", hint=f"usage: {SYNTAX}")

    if bridge.startswith("mac:"):
        wanted = bridge[len("mac:"):].lower()
        found = host.interface_with_mac(wanted)
        if found is None:
            raise NotFound(f"no host interface has MAC {wanted}",
                           hint="list MACs with 'ip -br link'")
        bridge = found

    kind = host.kind_of(bridge)
    create = False
    if kind is None:
        if bridge.startswith(("route", "rule", "tc")):
            tool: Literal["route", "rule", "tc"] = (
                "route" if bridge.startswith("route")
                else "rule" if bridge.startswith("rule") else "tc")
            return NetnsCommand(tool, guest, tuple(args[2:]))
        if bridge.startswith("ovs"):
            create = True  # pipework: ovs-vsctl add-br (we pick the datapath too)
        elif bridge.startswith("br"):
            raise BadInput(f'pipework would create a Linux bridge "{bridge}"; ovsbridge '
                           "attaches to Open vSwitch bridges",
                           hint=f"use an OVS bridge name (a missing ovs* bridge is created: "
                                f"ovs{bridge[2:] or '0'}), or keep pipework for Linux bridges")
        elif bridge.startswith("dummy"):
            raise BadInput(f'pipework would give the guest a dummy interface "{bridge}"; '
                           "ovsbridge only attaches to Open vSwitch bridges",
                           hint=f"ovsbridge attach OVSBRIDGE {guest} none (a link on a bridge)")
        else:
            raise NotFound(f'"{bridge}" is neither an OVS bridge nor a host interface',
                           hint="give an OVS bridge (list: ovs-vsctl list-br); a missing "
                                "bridge is created only when its name starts with 'ovs'")
    _refuse_foreign(kind, bridge)

    vlan, mac_text = "", macaddr
    if "@" in macaddr:
        mac_text, _, rest = macaddr.partition("@")
        vlan = rest.partition("@")[0]
        if not vlan:
            raise BadInput(f'VLAN after "@" is missing in "{macaddr}"',
                           hint="write MAC@VLAN or @VLAN")
    mac = ""
    if mac_text.startswith("U:"):
        mac = naming.pipework_mac(mac_text.partition(":")[2])
    elif mac_text:
        mac = mac_text

    fields: dict[str, str] = {"bridge": bridge, "guest": guest}
    if ifname is not None:
        fields["ifname"] = ifname
    if host_ifname is not None:
        fields["host_ifname"] = host_ifname
    if mac:
        fields["mac"] = mac
    if vlan:
        fields["vlan"] = vlan
    if create:
        fields["create_bridge"] = "true"

    client, notes = _address(address, family, fields)
    if client is not None and ":" in address:
        notes += _client_options(client, address.partition(":")[2], fields)
    return Attach(fields, guest, client, tuple(notes))


def _refuse_foreign(kind: HostKind | None, name: str) -> None:
    if kind == "linux-bridge":
        raise BadInput(f'"{name}" is a Linux bridge; ovsbridge attaches to Open vSwitch bridges',
                       hint=f"keep pipework for Linux bridges, or use an OVS bridge: "
                            f"ovs-vsctl add-br ovs{name[2:] or '0'} (or 'ovsbridge setup-bridge "
                            "UPLINK' to put the LAN NIC in one)")
    if kind == "ipoib":
        raise BadInput(f'"{name}" is an InfiniBand (IPoIB) interface; ovsbridge attaches to '
                       "Open vSwitch bridges",
                       hint="keep pipework for IPoIB child interfaces")
    if kind == "nic":
        raise BadInput(f'"{name}" is a network interface, not an OVS bridge: pipework would give '
                       "the guest a macvlan on it",
                       hint=f"put {name} in an OVS bridge with 'ovsbridge setup-bridge {name}' "
                            "and attach to ovsbr0, or use Docker's macvlan driver "
                            f"(docker network create -d macvlan -o parent={name} ...)")


def _address(address: str, family: str | None, fields: dict[str, str]) -> tuple[str | None,
                                                                                  list[str]]:
    notes: list[str] = []
    head = address.partition(":")[0]
    if head == "dhcp":
        fields["address"] = "dhcp"
        return "dhcp", notes
    if head in CLIENTS or (head.endswith("-f") and head[:-2] in CLIENTS):
        client = head[:-2] if head.endswith("-f") else head
        fields["address"] = "dhcp"
        notes.append(f"{head}: ovsbridge's own DHCP client takes the lease and its daemon "
                     f"renews it (no {client} is run)")
        return client, notes
    if family is not None and family not in ("4", "6"):
        raise BadInput(f'address family "-a {family}" is not 4 or 6', hint="use -a 4 or -a 6")
    if "/" not in address:
        raise BadInput("the IP address should include a netmask",
                       hint=f"maybe you meant {address}/24 ?")
    ip_text = address.partition("@")[0]
    if ip_text.partition("/")[0] in ("0", "0.0.0.0"):
        fields["address"] = "none"  # pipework's "0/0": the link up, no address
        return None, notes
    if "@" in address:
        gateway = address.partition("@")[2].partition("@")[0]
        fields["address"] = f"{ip_text}@{gateway}"
    else:
        fields["address"] = ip_text
    version = 6 if ":" in ip_text else 4
    if family is not None and int(family) != version:
        raise BadInput(f'"{ip_text}" is not an IPv{family} address (-a {family})',
                       hint=f"drop -a {family}, or give an IPv{family} address")
    return None, notes


def _client_options(client: str, text: str, fields: dict[str, str]) -> list[str]:
    """OPTS after ``dhcp:``/``udhcpc:``...: the ones with a meaning for ovsbridge's client are
    applied, the others reported (pipework splits them on whitespace, unquoted)."""
    words = [w for w in _IFS.split(text) if w]
    notes: list[str] = []
    ignored: list[str] = []
    tries, pause = 3, 3.0
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else None
        if word in ("-f", "-q", "-b", "-n", "-R", "-S", "-B", "-a", "-d", "-1", "-nw"):
            if word == "-f":
                notes.append("-f: the lease is kept and renewed by ovsbridge's daemon")
            else:
                ignored.append(word)
        elif word in ("-x",) and value is not None:
            opt, _, val = value.partition(":")
            if opt == "hostname" and val:
                fields["hostname"] = val
            else:
                ignored.append(f"{word} {value}")
            i += 1
        elif word in ("-h", "-F", "-H") and value is not None and client != "dhclient":
            fields["hostname"] = value
            i += 1
        elif word == "-t" and value is not None and value.isdigit():
            tries = int(value)
            fields["dhcp_timeout"] = str(max(tries * pause, 1))
            i += 1
        elif word == "-T" and value is not None and value.isdigit():
            pause = float(value)
            fields["dhcp_timeout"] = str(max(tries * pause, 1))
            i += 1
        elif word in ("-r", "-V", "-O", "-s", "-p", "-A", "-i", "-pf", "-lf", "-cf") \
                and value is not None:
            ignored.append(f"{word} {value}")
            i += 1
        else:
            ignored.append(word)
        i += 1
    if ignored:
        notes.append(f"{client} options not used by ovsbridge's DHCP client: "
                     f"{' '.join(ignored)}")
    return notes
