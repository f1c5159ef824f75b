"""cleanup: find the OVS ports that dead containers left behind and remove them in one go.

A port is judged by ``assess`` (shared with ``ovsbridge ps``): stale when its kernel interface
is gone, when OVS reports an error or ofport -1 on it, or when the guest it records is gone,
stopped or restarted into another netns. Only ports made by ovsbridge, pipework (``pipework.*``
external_ids), ovs-docker (``container_id``) or untagged veth ports are candidates (see
``identity`` for the keys each tool really writes); uplinks,
internal, patch and tunnel ports, bonds, ports other tools tagged, and ports younger than
``MIN_AGE`` seconds are never removed. All removals are one OVSDB transaction (by port UUID,
so a port re-created under the same name meanwhile is untouched), then the DHCP leases of the
removed ports are dropped from the daemon and leftover host veths are deleted.

NOTE on reading order: OVS is read before the kernel. pipework, ovs-docker and ovsbridge all
create the veth before they add its port, so a port seen in OVS whose device is missing from
the later kernel read is really gone, never an attach in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovsbridge import naming
from ovsbridge.ops import ipv6
from ovsbridge.ops.backend import OvsPort

MIN_AGE = 10.0  # seconds: a younger port of ours may be an attach in flight
KERNEL_TYPES = ("", "system")
TUNNEL_TYPES = frozenset({"vxlan", "gre", "geneve", "stt", "lisp", "erspan", "ip6erspan",
                          "ip6gre", "gtpu", "bareudp", "srv6"})
# Marks setup-bridge (or an admin) may put on an uplink; any of them protects the port.
UPLINK_ROLE_KEY = "ovsbridge.role"
UPLINK_ROLE = "uplink"
UPLINK_KEY = "ovsbridge.uplink"

# Guest states a probe reports.
ALIVE, GONE, STOPPED, RESTARTED, UNKNOWN = "alive", "gone", "stopped", "restarted", "unknown"


@dataclass(frozen=True)
class KernelLink:
    """A root-netns interface as the kernel reports it (kind: rtnetlink's IFLA_INFO_KIND,
    e.g. ``veth``, ``tun``; None for a physical NIC)."""

    name: str
    index: int
    kind: str | None
    alias: str = ""  # ifalias: ovsbridge's identity on links it made (naming.link_alias)


@dataclass(frozen=True)
class PortFacts:
    """An OVS port with what cleanup needs beyond ``OvsPort``, from the same OVSDB read."""

    port: OvsPort
    uuid: str
    interfaces: int = 1
    bridge_external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    state: str  # ok | stale | error
    reason: str


class GuestProbe(Protocol):
    def guest_state(self, kind: str, key: str, netns_inode: int | None) -> str: ...
    def container_state(self, ref: str) -> str: ...


class CleanupBackend(GuestProbe, Protocol):
    def bridge_exists(self, name: str) -> bool: ...
    def port_facts(self, bridge: str | None) -> list[PortFacts]: ...
    def kernel_links(self) -> dict[str, KernelLink]: ...
    def remove_ports(self, ports: Sequence[PortFacts]) -> None: ...
    def delete_link(self, link: KernelLink) -> bool: ...
    def drop_lease(self, guest_key: str, ifname: str) -> bool: ...
    def lock_free(self, guest_key: str, ifname: str) -> bool: ...
    def ovn(self) -> Any: ...  # ops/ovn.py OvnSide, only asked for OVN attachments
    def hold_lock(self, guest_key: str, ifname: str) -> bool:
        """Take GUEST_KEY/IFNAME's lock if nobody holds it, and keep it until release_locks."""
        ...
    def release_locks(self) -> None: ...
    def link_alias(self, name: str) -> str | None: ...
    def building_notes(self) -> dict[str, tuple[str, str]]:
        """HOST_NAME -> (guest_key, ifname) that killed attaches noted (system/locks.py)."""
        ...

    def clear_note(self, guest_key: str, ifname: str) -> None: ...
    def sweep_idle_locks(self) -> None: ...


class BackendProbe:
    """A GuestProbe over the core Backend's yes/no answers (for ``ps``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def guest_state(self, kind: str, key: str, netns_inode: int | None) -> str:
        alive = self.backend.guest_alive(kind, key, -1 if netns_inode is None else netns_inode)
        return UNKNOWN if alive is None else (ALIVE if alive else GONE)

    def container_state(self, ref: str) -> str:
        running = self.backend.container_running(ref)
        return UNKNOWN if running is None else (ALIVE if running else GONE)

    def lock_free(self, guest_key: str, ifname: str) -> bool:
        return bool(self.backend.try_guest_lock(guest_key, ifname))


def owner_of(port: OvsPort) -> str:
    from ovsbridge.ops.ps import owner_of as ps_owner_of

    return ps_owner_of(port)


# ----- judging one port -------------------------------------------------------------------
_GUEST_WORDS = {
    "docker": {GONE: "container gone", STOPPED: "container stopped",
               RESTARTED: "container restarted (new netns)"},
    "netns": {GONE: "netns gone", RESTARTED: "netns re-created", STOPPED: "netns gone"},
    "pid": {GONE: "process gone", RESTARTED: "process replaced (other netns)",
            STOPPED: "process gone"},
}


def assess(port: OvsPort, owner: str, links: Mapping[str, KernelLink] | Collection[str],
           probe: GuestProbe) -> Verdict:
    """Is PORT healthy? ``links`` are the kernel's interfaces (names, or name -> KernelLink)."""
    if port.iface_type in KERNEL_TYPES and port.port not in links:
        return Verdict("stale", "interface gone from the kernel")
    if port.error or port.ofport == -1:
        return Verdict("error", f"OVS reports: {port.error}" if port.error else "ofport -1")
    ids = port.external_ids
    if owner == "ovsbridge":
        link = links.get(port.port) if isinstance(links, Mapping) else None
        parsed = naming.parse_link_alias(link.alias) if isinstance(link, KernelLink) else None
        if parsed is not None and parsed[0] == naming.ALIAS_BUILDING:
            free = getattr(probe, "lock_free", None)
            if free is None or free(parsed[1], parsed[2]):
                return Verdict("stale", "incomplete attachment (its attach was killed)")
            return Verdict("ok", "attach in progress")
        inode = ids.get(naming.K_NETNS_INODE, "")
        kind = ids.get(naming.K_GUEST_KIND, "docker")
        state = probe.guest_state(kind, ids.get(naming.K_CONTAINER_ID, ""),
                                  int(inode) if inode.isdigit() else None)
        return _guest_verdict(kind, state)
    ref = _recorded_container(port, owner)
    if ref:
        return _guest_verdict("docker", probe.container_state(ref))
    return Verdict("ok", "healthy")


def _guest_verdict(kind: str, state: str) -> Verdict:
    if state == ALIVE:
        return Verdict("ok", "healthy")
    if state == UNKNOWN:
        return Verdict("ok", "guest state unknown (Docker unreachable?)")
    words = _GUEST_WORDS.get(kind, _GUEST_WORDS["docker"])
    return Verdict("stale", words.get(state, state))


def _recorded_container(port: OvsPort, owner: str) -> str | None:
    if owner in ("ovs-docker", "pipework"):
        return identity(port, owner).container_id
    return None


def protection(facts: PortFacts, owner: str,
               links: Mapping[str, KernelLink]) -> str | None:
    """Why this port must never be removed, or None when it may be (if stale)."""
    port = facts.port
    if port.iface_type == "internal":
        return "internal port"
    if port.iface_type == "patch":
        return "patch port"
    if port.iface_type in TUNNEL_TYPES:
        return f"tunnel port ({port.iface_type})"
    if port.iface_type not in KERNEL_TYPES:
        return f"{port.iface_type} port"
    if facts.interfaces > 1:
        return "bond (uplink)"
    if _uplink_marked(facts):
        return "uplink"
    if owner == "ovn":
        return "ovn-controller's port"
    if owner == "unknown":
        foreign = sorted({*port.external_ids, *port.port_external_ids})
        if foreign:
            return f"tagged by another tool ({', '.join(foreign[:3])})"
        link = links.get(port.port)
        if link is not None and link.kind != "veth":
            return f"not a veth ({link.kind or 'physical NIC'})"
    return None


def _uplink_marked(facts: PortFacts) -> bool:
    port = facts.port
    for ids in (port.external_ids, port.port_external_ids):
        if ids.get(UPLINK_ROLE_KEY) == UPLINK_ROLE or UPLINK_KEY in ids:
            return True
    recorded = facts.bridge_external_ids.get(UPLINK_KEY, "")
    return port.port in recorded.split(",")


def _age(port: OvsPort, now: float) -> float | None:
    raw = port.external_ids.get(naming.K_CREATED_AT)
    try:
        return now - float(raw) if raw else None
    except ValueError:
        return None


# ----- the operation ----------------------------------------------------------------------
@dataclass(frozen=True)
class CleanupEntry:
    bridge: str
    port: str
    owner: str
    container_id: str | None
    container_name: str | None
    ifname: str | None
    state: str  # ok | stale | error
    action: str  # removed | would remove | kept
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"bridge": self.bridge, "port": self.port, "owner": self.owner,
                "container_id": self.container_id, "container_name": self.container_name,
                "ifname": self.ifname, "state": self.state, "action": self.action,
                "reason": self.reason}


@dataclass(frozen=True)
class CleanupResult:
    dry_run: bool
    removed: tuple[CleanupEntry, ...]  # would be removed, with dry_run
    kept: tuple[CleanupEntry, ...]
    leases_dropped: tuple[str, ...] = ()
    links_deleted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run,
                "removed": [e.to_json() for e in self.removed],
                "kept": [e.to_json() for e in self.kept],
                "leases_dropped": list(self.leases_dropped),
                "links_deleted": list(self.links_deleted),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Identity:
    """Whose port this is, as its maker's tags record it (None: not recorded)."""

    container_id: str | None = None
    container_name: str | None = None
    ifname: str | None = None  # inside the guest
    pid: int | None = None  # pipework: the container's pid when it ran


def identity(port: OvsPort, owner: str) -> Identity:
    """Read a port's tags under the keys its maker really writes.

    pipework records the full container id, docker's name with its leading "/", and the
    pid, but not the interface name inside the container; ovs-docker records whatever its
    user typed as the container (a name or an id) and the interface name.
    """
    ids = port.external_ids
    if owner == "ovsbridge":
        return Identity(ids.get(naming.K_CONTAINER_ID), ids.get(naming.K_CONTAINER_NAME),
                        ids.get(naming.K_IFNAME))
    if owner == "ovs-docker":
        return Identity(ids.get(naming.OD_CONTAINER_ID) or None, None,
                        ids.get(naming.OD_CONTAINER_IFACE) or None)
    if owner == "pipework":
        pw = {**port.port_external_ids, **ids}
        name = pw.get(naming.PW_CONTAINER_NAME, "").lstrip("/") or None
        nspid = pw.get(naming.PW_NSPID, "")
        return Identity(pw.get(naming.PW_CONTAINER_ID) or None, name, None,
                        int(nspid) if nspid.isdigit() else None)
    return Identity()


def _identity(port: OvsPort, owner: str) -> tuple[str | None, str | None, str | None]:
    found = identity(port, owner)
    return found.container_id, found.container_name, found.ifname


def cleanup(backend: CleanupBackend, bridge: str | None = None, *, dry_run: bool = False,
            min_age: float = MIN_AGE, now: float | None = None,
            select: Callable[[PortFacts], bool] | None = None,
            incomplete_only: bool = False) -> CleanupResult:
    """Remove stale ports (on BRIDGE, or every bridge); with DRY_RUN only say which.

    SELECT narrows the candidates (the watcher passes "ports of this container"); ports it
    rejects are not reported at all. INCOMPLETE_ONLY removes only what killed attaches left
    (the daemon's start-up sweep).
    """
    if bridge is not None and not backend.bridge_exists(bridge):
        from ovsbridge.errors import NotFound

        raise NotFound(f'bridge "{bridge}" does not exist',
                       hint="list bridges with 'ovs-vsctl list-br'")
    try:
        result = _cleanup(backend, bridge, dry_run, min_age, now, select, incomplete_only)
    finally:
        backend.release_locks()
    if bridge is None and select is None and not dry_run:
        backend.sweep_idle_locks()  # the empty lock files killed operations left
    return result


def _cleanup(backend: CleanupBackend, bridge: str | None, dry_run: bool, min_age: float,
             now: float | None, select: Callable[[PortFacts], bool] | None,
             incomplete_only: bool) -> CleanupResult:
    facts = [f for f in backend.port_facts(bridge) if select is None or select(f)]
    links = backend.kernel_links()  # NOTE: after the OVS read; see the module docstring
    clock = time.time() if now is None else now
    doomed: list[tuple[PortFacts, CleanupEntry]] = []
    kept: list[CleanupEntry] = []
    for item in sorted(facts, key=lambda f: (f.port.bridge, f.port.port)):
        port = item.port
        owner = owner_of(port)
        verdict = assess(port, owner, links, backend)
        if verdict.reason.startswith("incomplete"):
            verdict = _confirm_incomplete(backend, port, links)
        shield = protection(item, owner, links)
        age = _age(port, clock)
        cid, name, ifname = _identity(port, owner)

        def entry(action: str, reason: str, verdict: Verdict = verdict, port: OvsPort = port,
                  owner: str = owner, cid: str | None = cid, name: str | None = name,
                  ifname: str | None = ifname) -> CleanupEntry:
            return CleanupEntry(port.bridge, port.port, owner, cid, name, ifname, verdict.state,
                                action, reason)

        if incomplete_only and not verdict.reason.startswith("incomplete"):
            continue
        if verdict.state == "ok":
            kept.append(entry("kept", f"{shield}, healthy" if shield else verdict.reason))
        elif shield:
            kept.append(entry("kept", f"{shield} (never removed; {verdict.reason})"))
        elif age is not None and age < min_age and not verdict.reason.startswith("incomplete"):
            # NOTE: an incomplete attachment was judged by its lock (free: nobody is building
            # it), which is proof enough; the grace period is for ports we cannot judge so.
            kept.append(entry("kept", f"created {max(age, 0):.0f}s ago, may be an attach in "
                                      f"flight ({verdict.reason})"))
        else:
            doomed.append((item, entry("would remove" if dry_run else "removed",
                                       verdict.reason)))
    orphans: list[KernelLink] = []
    building: dict[str, tuple[str, str]] = {}
    if bridge is None and select is None:
        building = backend.building_notes()
        orphans = [o for o in orphan_links(links, {f.port.port for f in facts},
                                           backend.lock_free, building)
                   if _still_orphan(backend, o, building)]
    if dry_run:
        return CleanupResult(True, tuple(e for _, e in doomed), tuple(kept),
                             links_deleted=tuple(o.name for o in orphans))
    leases: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    if doomed:
        backend.remove_ports([f for f, _ in doomed])
        leases, deleted, notes = _after_removal(backend, [f for f, _ in doomed], links)
    for link in orphans:
        try:
            if backend.delete_link(link):
                deleted += (link.name,)
                if link.alias == "":  # it was known by its note: the note is done
                    backend.clear_note(*building[link.name])
        except Exception as exc:  # reported
            notes += (f"leftover veth {link.name} not deleted: {exc}",)
    return CleanupResult(False, tuple(e for _, e in doomed), tuple(kept), leases, deleted,
                         notes)


def _after_removal(backend: CleanupBackend, removed: Iterable[PortFacts],
                   links: Mapping[str, KernelLink]) -> tuple[tuple[str, ...], tuple[str, ...],
                                                            tuple[str, ...]]:
    """Drop the daemon's leases of removed DHCP ports; delete their leftover host veths."""
    leases: list[str] = []
    deleted: list[str] = []
    notes: list[str] = []
    for item in removed:
        port = item.port
        ids = port.external_ids
        if owner_of(port) == "ovsbridge" and (ids.get(naming.K_MODE) == "dhcp"
                                              or ipv6.holds_dhcp6(port)):
            key, ifname = ids.get(naming.K_CONTAINER_ID, ""), ids.get(naming.K_IFNAME, "")
            try:
                if backend.drop_lease(key, ifname):
                    leases.append(f"{key[:12]}/{ifname}")
            except Exception as exc:  # the port is gone; the lease is advisory
                notes.append(f"lease of {key[:12]}/{ifname} not dropped: {exc}")
        if owner_of(port) == "ovsbridge" and ids.get("ovsbridge.ovn_port"):
            # NOTE: the logical port goes too, unless another chassis holds it by now.
            from ovsbridge.ops.ovn import detach_release

            try:
                note = detach_release(backend, ids)
            except Exception as exc:
                note = f"kept logical port {ids['ovsbridge.ovn_port']}: {exc}"
            if note.startswith("kept"):
                notes.append(note)
        link = links.get(port.port)
        if link is not None and owner_of(port) == "ovsbridge" and not _link_proves(link, port):
            notes.append(f"host interface {link.name} left alone: it is not this port's")
            continue
        if link is not None and link.kind == "veth":
            try:
                if backend.delete_link(link):
                    deleted.append(link.name)
            except Exception as exc:  # reported; the OVS part is done
                notes.append(f"host interface {link.name} not deleted: {exc}")
    return tuple(leases), tuple(deleted), tuple(notes)


def _confirm_incomplete(backend: CleanupBackend, port: OvsPort,
                        links: Mapping[str, KernelLink]) -> Verdict:
    """An attachment judged incomplete: take its lock (kept until the removal is done) and
    read its identity again, so an attach that finished meanwhile is never taken for dead."""
    parsed = naming.parse_link_alias(links[port.port].alias)
    assert parsed is not None
    if not backend.hold_lock(parsed[1], parsed[2]):
        return Verdict("ok", "attach in progress")
    now = naming.parse_link_alias(backend.link_alias(port.port))
    if now is None or now[0] != naming.ALIAS_BUILDING:
        return Verdict("ok", "healthy (its attach has just finished)")
    return Verdict("stale", "incomplete attachment (its attach was killed)")


def _still_orphan(backend: CleanupBackend, link: KernelLink,
                  notes: Mapping[str, tuple[str, str]]) -> bool:
    """Hold the lock of an orphan veth's guest interface, then check it is still the same
    (an untagged one: still untagged, and still the one its note names)."""
    owner = _orphan_owner(link, notes)
    if owner is None or not backend.hold_lock(*owner):
        return False
    if backend.link_alias(link.name) != link.alias:
        return False
    return link.alias != "" or backend.building_notes().get(link.name) == owner


def _orphan_owner(link: KernelLink, notes: Mapping[str, tuple[str, str]]
                  ) -> tuple[str, str] | None:
    """(guest_key, ifname) a veth was being built for: its ``building`` tag, or, for an
    untagged one (killed between create and tag), the note its attach left in the lock."""
    parsed = naming.parse_link_alias(link.alias)
    if parsed is not None:
        return (parsed[1], parsed[2]) if parsed[0] == naming.ALIAS_BUILDING else None
    return notes.get(link.name) if link.alias == "" else None


def _link_proves(link: KernelLink, port: OvsPort) -> bool:
    """Does LINK's identity say it is the host end of our PORT?"""
    ids = port.external_ids
    key, ifname = ids.get(naming.K_CONTAINER_ID, ""), ids.get(naming.K_IFNAME, "")
    parsed = naming.parse_link_alias(link.alias)
    if parsed is None:  # made before links carried an identity: only the derived name
        return link.alias == "" and link.name == naming.host_ifname(key, ifname)
    return parsed[1:] == (key, ifname)


def orphan_links(links: Mapping[str, KernelLink], port_names: Collection[str],
                 lock_free: Callable[[str, str], bool],
                 notes: Mapping[str, tuple[str, str]] | None = None) -> list[KernelLink]:
    """Host veths ovsbridge made (by their identity) that are still ``building``, that no OVS
    port uses and that no operation holds: the leftovers of an attach killed before its port
    was added; also an untagged veth that a killed attach's note names (NOTES, see
    system/locks.py). NOTE: a ``ready`` veth with no port here may belong to another OVSDB (a
    simulated host, ``--db``): it is never an orphan of ours."""
    out = []
    for link in links.values():
        owner = _orphan_owner(link, notes or {})
        if owner is None or link.name in port_names or link.kind != "veth":
            continue
        if lock_free(*owner):
            out.append(link)
    return sorted(out, key=lambda link: link.name)


def ports_of_container(*refs: str) -> Callable[[PortFacts], bool]:
    """SELECT for ``cleanup``: the ports that record one of REFS (a container's id or name).

    ovsbridge records the full id; ovs-docker and pipework record whatever their user typed
    (a name, a full or a short id).
    """
    wanted = {r for r in refs if r}
    full_ids = [r for r in wanted if len(r) == 64]

    def select(facts: PortFacts) -> bool:
        port = facts.port
        cid = _identity(port, owner_of(port))[0]
        if not cid:
            return False
        return cid in wanted or (len(cid) >= 12 and any(f.startswith(cid) for f in full_ids))

    return select
