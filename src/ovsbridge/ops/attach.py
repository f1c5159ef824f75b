"""attach and detach: put guests' interfaces on an OVS bridge, or take them off.

One code path for one guest or a hundred: ``attach_many`` prepares every guest (veth, guest
link, offload) in parallel, adds all their OVS ports in one transaction per bridge, then
configures addresses (DHCP exchanges concurrent). Each guest has its own undo stack: a
failing guest is rolled back without touching the others. Work on one guest interface is
serialised by ``backend.guest_lock`` (across processes), so parallel identical attaches all
succeed with one port.

Crash consistency: the host veth end carries its identity in its ifalias, ``building`` until
the last step has run and ``ready`` after; cleanup and a re-attach treat a ``building``
attachment whose lock is free as the leftover of a killed run. Nothing is deleted by name
alone: a host link is deleted only when its identity is the one meant.

``replace`` is atomic in effect: every check runs before the old attachment is touched, and
if building the new one fails, the old one is rebuilt from the request it recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ovsbridge import naming
from ovsbridge.errors import (
    BadInput,
    Conflict,
    EnvironmentProblem,
    NotFound,
    OperationFailed,
    OvsbridgeError,
)
from ovsbridge.model import Guest, GuestSpec, StaticAddress
from ovsbridge.ops import addressing, ipv6, ports
from ovsbridge.ops import ovn as ovn_ops
from ovsbridge.ops.backend import Backend, BridgeInfo, NewPort, OvsPort
from ovsbridge.ops.undo import UndoStack
from ovsbridge.request import AttachRequest, build_attach_request

log = logging.getLogger(__name__)
MAX_WORKERS = 16  # guests configured at once when they wait on the network (DHCP, RAs, OVN)
# Guests worked on at once otherwise: that work is Python (one core: the GIL) between short
# waits (Docker, the kernel); more threads only contend (measured: 100 static guests take
# 1.2-1.4 s of CPU with 1-3 threads, 1.6 s with 16).
CPU_WORKERS = 2

Progress = Callable[[int, Any], None]
W = TypeVar("W")


@dataclass(frozen=True)
class AttachResult:
    status: str  # attached | already attached | replaced
    bridge: str
    port: str
    guest: str
    container_id: str
    ifname: str
    mac: str
    mtu: int | None
    vlan: int | None
    mode: str
    addresses: tuple[str, ...]
    lease: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())
    extra: dict[str, Any] = field(default_factory=dict)  # lease6, slaac (ops/ipv6.py)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra,
            "status": self.status, "bridge": self.bridge, "port": self.port,
            "container": self.guest, "container_id": self.container_id,
            "ifname": self.ifname, "mac": self.mac, "mtu": self.mtu, "vlan": self.vlan,
            "mode": self.mode, "addresses": list(self.addresses), "lease": self.lease,
        }


@dataclass(frozen=True)
class DetachResult:
    guest: str
    removed: tuple[tuple[str, str, str], ...]  # (bridge, port, ifname)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"container": self.guest, "removed": [
            {"bridge": b, "port": p, "ifname": i} for b, p, i in self.removed],
            "notes": list(self.notes)}


def resolve_mac(req: AttachRequest, guest: Guest) -> str:
    return req.mac or naming.stable_mac(guest.key, req.ifname)


def dhcp_hostname(req: AttachRequest, guest: Guest) -> str | None:
    raw = req.hostname or guest.name
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", raw).strip("-")[:63]
    return cleaned or None


def ours(port: OvsPort) -> bool:
    return port.external_ids.get(naming.K_OWNER) == naming.OWNER


def attachments_of(backend: Backend, key: str, ifname: str | None = None) -> list[OvsPort]:
    match = {naming.K_OWNER: naming.OWNER, naming.K_CONTAINER_ID: key}
    if ifname is not None:
        match[naming.K_IFNAME] = ifname
    return backend.ports(None, match)


# ----- attach -----------------------------------------------------------------------------
@dataclass
class _Work:
    """One guest's attach as it goes through the phases."""

    index: int
    req: AttachRequest
    undo: UndoStack
    locks: ExitStack = field(default_factory=ExitStack)
    guest: Guest | None = None
    mac: str = ""
    mtu: int | None = None
    host_name: str = ""
    status: str = "attached"
    port: NewPort | None = None
    applied: int | None = None  # token: the port is in OVSDB, vswitchd may still apply it
    ovn: ovn_ops.OvnAttachment | None = None
    outcome: Any = None  # AttachResult | OvsbridgeError once finished

    @property
    def done(self) -> bool:
        return self.outcome is not None


def attach(backend: Backend, req: AttachRequest) -> AttachResult:
    """Attach one guest; raises its error (after rollback)."""
    outcome = attach_many(backend, [req])[0]
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, AttachResult)
    return outcome


def attach_many(backend: Backend, requests: Sequence[AttachRequest],
                progress: Progress | None = None, fail_at: str | None = None,
                kill_at: str | None = None) -> list[Any]:
    """Attach every request; one AttachResult or OvsbridgeError per request, in order.

    PROGRESS(index, outcome) is called as each guest finishes (from worker threads);
    FAIL_AT and KILL_AT are the test hooks of ops/undo.py.
    """
    works = [_Work(i, r, UndoStack(fail_at, kill_at)) for i, r in enumerate(requests)]
    claimed: dict[tuple[str, str], int] = {}
    claim_lock = threading.Lock()
    bridge_undo = UndoStack(fail_at, kill_at)

    def finish(work: _Work, outcome: Any) -> None:
        work.outcome = outcome
        work.locks.close()
        if progress is not None:
            progress(work.index, outcome)

    def fail(work: _Work, exc: BaseException) -> None:
        error = work.undo.fail(exc)
        finish(work, _domain(error))

    # NOTE: one attach runs both phases in this thread: one session serves them (every
    # netlink socket set is made once). In bulk, each worker thread has a session for all
    # its guests (the host's sockets made once per thread), and one per guest and phase
    # inside it (a guest's sockets are closed when its phase ends).
    single = len(works) == 1
    outer = backend.session() if single else contextlib.nullcontext()
    inner = contextlib.nullcontext if single else backend.session
    try:
        outer.__enter__()
        bridges = _bridges(backend, works, bridge_undo, fail)

        def prepare(work: _Work) -> None:
            try:
                with inner():
                    early = _prepare(backend, work, bridges[work.req.bridge], claimed,
                                     claim_lock)
            except Exception as exc:
                fail(work, exc)
                return
            if early is not None:
                finish(work, early)

        _each(prepare, [w for w in works if not w.done], CPU_WORKERS, backend.session)
        for name, info in bridges.items():
            ready = [w for w in works if not w.done and w.port is not None
                     and w.req.bridge == name]
            _add_ports(backend, info, ready, fail)

        def configure(work: _Work) -> None:
            try:
                with inner():
                    result = _configure(backend, work)
                finish(work, result)
            except Exception as exc:
                fail(work, exc)

        todo = [w for w in works if not w.done]
        _each(configure, todo, MAX_WORKERS if any(w.req.plan.dynamic or w.ovn for w in todo)
              else CPU_WORKERS, backend.session)
        if bridge_undo.pending and all(isinstance(w.outcome, OvsbridgeError) for w in works):
            bridge_undo.unwind()  # a bridge we created for guests that all failed
        bridge_undo.commit()
    except BaseException as exc:  # Ctrl-C, or a bug: unwind everything not finished
        for work in works:
            if not work.done:
                work.undo.unwind()
                work.locks.close()
        bridge_undo.unwind()
        raise exc from None
    finally:
        outer.__exit__(None, None, None)
    return [w.outcome for w in works]


def _each(func: Callable[[W], None], works: list[W], workers: int,
          session: Callable[[], contextlib.AbstractContextManager[None]]) -> None:
    """FUNC on each of WORKS, by up to WORKERS threads, each inside its own SESSION."""
    if len(works) <= 1:
        for work in works:
            func(work)
        return
    pending = iter(works)
    take = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with session():
                while not stop.is_set():
                    with take:
                        work = next(pending, None)
                    if work is None:
                        return
                    func(work)
        except BaseException as exc:  # FUNC handles its errors: this is a bug; re-raised
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"attach-{i}", daemon=True)
               for i in range(min(workers, len(works)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:  # Ctrl-C here: the workers finish the guest they are on and take no other
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _domain(exc: BaseException) -> OvsbridgeError:
    if isinstance(exc, OvsbridgeError):
        return exc
    log.error("internal error during attach", exc_info=exc)
    wrapped = OperationFailed(f"internal error: {type(exc).__name__}: {exc}",
                              hint="run again with --debug and report the traceback")
    wrapped.__cause__ = exc
    return wrapped


def _bridges(backend: Backend, works: list[_Work], undo: UndoStack,
             fail: Callable[[_Work, BaseException], None]) -> dict[str, BridgeInfo]:
    """Each bridge the requests name, created when asked; requests on a missing one fail."""
    found: dict[str, BridgeInfo] = {}
    for name in dict.fromkeys(w.req.bridge for w in works):
        mine = [w for w in works if w.req.bridge == name]
        info = backend.bridge_info(name)
        if info is None and any(w.req.create_bridge for w in mine):
            backend.create_bridge(name, backend.auto_datapath())
            undo.push(f"delete bridge {name}", functools.partial(backend.delete_bridge, name))
            try:
                undo.step_done("bridge")
            except Exception as exc:
                undo.unwind()
                for work in mine:
                    fail(work, exc)
                continue
            info = backend.bridge_info(name)
        if info is None:
            for work in mine:
                fail(work, NotFound(
                    f'bridge "{name}" does not exist',
                    hint=f"create it with 'ovsbridge setup-bridge UPLINK --bridge {name}', "
                         "or pass --create-bridge"))
            continue
        found[name] = info
    return found


def _prepare(backend: Backend, work: _Work, bridge: BridgeInfo,
             claimed: dict[tuple[str, str], int],
             claim_lock: threading.Lock) -> AttachResult | None:
    """Resolve, lock, decide, then build the veth and the guest link (no OVS write yet).

    Returns the result at once when the same attachment already exists."""
    req, undo = work.req, work.undo
    guest = backend.resolve_guest(req.guest)
    work.guest = guest
    with claim_lock:
        other = claimed.setdefault((guest.key, req.ifname), work.index)
    if other != work.index:
        raise BadInput(f"{_describe(guest)} {req.ifname} is asked twice in one command",
                       hint="list each guest once")
    work.locks.enter_context(backend.guest_lock(guest.key, req.ifname))
    mac = resolve_mac(req, guest)
    host_name = req.host_ifname or naming.host_ifname(guest.key, req.ifname)
    fingerprint = req.fingerprint()

    old: OvsPort | None = None
    existing = attachments_of(backend, guest.key, req.ifname)
    for found in existing:
        if _healthy(backend, found, guest):
            if found.external_ids.get(naming.K_CONFIG) == fingerprint:
                return _result("already attached", found.bridge, found.port, guest, req, mac,
                               _recorded_mtu(found) or req.mtu or bridge.mtu,
                               _recorded_addresses(found))
            if not req.replace:
                raise Conflict(
                    f'{_describe(guest)} already has {req.ifname} on bridge '
                    f'"{found.bridge}" with another configuration',
                    hint="detach it first, or pass --replace",
                )
            work.status = "replaced"
        old = found
    stale = [p for p in existing if p is not old]

    # Every check before anything is touched: a failed replace must leave the old one.
    alias = backend.host_link_alias(host_name)
    leftover = False
    if alias is not None and not (old is not None and old.port == host_name):
        parsed = naming.parse_link_alias(alias)
        # NOTE: a veth is created first and tagged right after (the kernel ignores an alias
        # in the create request): one killed in between has no identity yet, but its name,
        # derived from this guest and ifname, proves whose it is (we hold the lock).
        if alias == "" and host_name == naming.host_ifname(guest.key, req.ifname):
            parsed = (naming.ALIAS_BUILDING, guest.key, req.ifname)
        if parsed is None or parsed[1:] != (guest.key, req.ifname):
            raise Conflict(f"host interface {host_name} already exists and is not "
                           f"ovsbridge's for {_describe(guest)}",
                           hint="pick another --host-ifname")
        leftover = True  # our own veth from a killed attach (we hold its lock)
    if old is not None or stale or leftover:
        # NOTE: only when something will be removed first: on a fresh attach, renaming the
        # guest end refuses a taken name by itself (and the veth is rolled back).
        guest_link = backend.guest_link(guest.netns_path, req.ifname)
        if guest_link is not None and not (old is not None and _same_netns(old, guest)) \
                and not leftover:
            raise Conflict(f"{_describe(guest)} already has an interface named {req.ifname}",
                           hint="pick another --ifname")

    for port in stale:
        _remove_attachment(backend, port, guest)
    if leftover:
        backend.delete_host_link(host_name, alias)
    if old is not None:
        old_request = _recorded_request(old) if work.status == "replaced" else None
        _remove_attachment(backend, old, guest)
        if old_request is not None:
            undo.push(f"restore the previous attachment of {guest.name}",
                      lambda: _rebuild(backend, old_request, guest))
    _build(backend, work, bridge, guest)
    return None


def _build(backend: Backend, work: _Work, bridge: BridgeInfo, guest: Guest) -> None:
    """The veth pair (host end tagged ``building``), the guest link, offload, link up."""
    req, undo = work.req, work.undo
    work.guest = guest
    work.mac = resolve_mac(req, guest)
    work.ovn = ovn_ops.attach_prepare(backend, req, guest, work.mac, undo)
    work.mac = work.ovn.mac if work.ovn else work.mac
    work.mtu = req.mtu or bridge.mtu
    host_name = work.host_name = req.host_ifname or naming.host_ifname(guest.key, req.ifname)
    peer = naming.peer_tmp_ifname(host_name)
    building = naming.link_alias(guest.key, req.ifname, naming.ALIAS_BUILDING)
    backend.note_building(guest.key, req.ifname, host_name)  # our proof until it is tagged
    backend.create_veth(host_name, peer, guest.netns_path, work.mtu, building)
    backend.note_building(guest.key, req.ifname, None)  # tagged: its ifalias is the proof
    undo.push(f"delete veth {host_name}",
              lambda: _delete_own_link(backend, host_name, guest.key, req.ifname))
    undo.step_done("veth")

    backend.configure_guest_link(guest.netns_path, peer, req.ifname, work.mac, work.mtu)
    undo.step_done("guest-link")

    if bridge.datapath == "netdev":
        backend.disable_tx_offload(host_name, None)
        backend.disable_tx_offload(req.ifname, guest.netns_path)
        undo.step_done("offload")
    addresses = tuple(str(s) for s in req.plan.statics)
    work.port = NewPort(host_name, _external_ids(guest, req, work.mac, work.mtu,
                                                 req.fingerprint(), addresses), req.vlan,
                        *ports.columns(req), ports.qos_max_rate(req))
    work.port.external_ids.update(work.ovn.external_ids() if work.ovn else {})


def _add_ports(backend: Backend, bridge: BridgeInfo, works: list[_Work],
               fail: Callable[[_Work, BaseException], None]) -> None:
    """All prepared ports of BRIDGE in one transaction (one by one if that fails)."""
    if not works:
        return
    pin = None
    if bridge.mtu_request is None and bridge.mtu and any(
            w.mtu is not None and w.mtu < bridge.mtu for w in works):
        # NOTE: OVS lowers a bridge's internal port to its smallest port's MTU unless the
        # bridge has mtu_request: pin the MTU it has now, so a small container never lowers
        # the host's own MTU.
        pin = bridge.mtu
    try:
        token = backend.add_ports(bridge.name, [w.port for w in works if w.port], pin,
                                  wait=False)
    except Exception as exc:
        if len(works) == 1 or isinstance(exc, EnvironmentProblem):
            # NOTE: OVS unreachable (or vswitchd not applying) fails every port alike:
            # trying them one by one would only wait out the timeout once per guest.
            for work in works:
                fail(work, exc)
            return
        for work in works:
            try:
                assert work.port is not None
                work.applied = backend.add_ports(bridge.name, [work.port], pin, wait=False)
            except Exception as one:
                fail(work, one)
                continue
            _port_added(backend, work, fail)
        return
    for work in works:
        work.applied = token
        _port_added(backend, work, fail)


def _port_added(backend: Backend, work: _Work,
                fail: Callable[[_Work, BaseException], None]) -> None:
    name = work.host_name
    work.undo.push(f"delete port {name}", lambda: backend.del_ports([name]))
    try:
        work.undo.step_done("port")
    except Exception as exc:
        fail(work, exc)


def _configure(backend: Backend, work: _Work) -> AttachResult:
    """Addresses, routes, announcements or DHCP; then mark the attachment ready."""
    req, undo, guest = work.req, work.undo, work.guest
    assert guest is not None

    def datapath() -> None:
        # NOTE: the port went into OVSDB without waiting for ovs-vswitchd: the guest's
        # addresses and routes are set meanwhile; anything that sends a packet (an
        # announcement, DHCP, RAs, OVN binding) and "ready" wait for vswitchd first.
        if work.applied is not None:
            backend.wait_applied(work.applied)
            work.applied = None

    if work.ovn:
        datapath()
        ovn_ops.attach_bound(backend, work.ovn, work.host_name, undo)
    addresses = tuple(str(s) for s in req.plan.statics)
    lease_json: dict[str, Any] | None = None
    if req.plan.statics:
        _apply_statics(backend, undo, guest, req, work.mac, datapath)
    datapath()
    if "dhcp" in req.plan.dynamic:
        lease_json = _apply_dhcp(backend, undo, guest, req, work.mac)
        addresses = (str(lease_json["address"]), *addresses)
        work.mtu = addressing.apply_lease_mtu(backend, undo, guest, req, work.host_name,
                                              work.mtu, lease_json)
    v6 = ipv6.configure(backend, undo, guest, req, work.mac) if ipv6.wanted(req.plan) else None
    if v6 is not None:
        addresses = (*addresses, *v6.addresses)
    addressing.record_addresses(backend, work.host_name, req, addresses, lease_json, v6)
    backend.set_host_alias(work.host_name,
                           naming.link_alias(guest.key, req.ifname, naming.ALIAS_READY))
    undo.step_done("ready")
    undo.commit()
    result = _result(work.status, req.bridge, work.host_name, guest, req, work.mac, work.mtu,
                     addresses, lease_json)
    return result if v6 is None else dataclasses.replace(result, notes=v6.notes,
                                                         extra=v6.to_json())


def _rebuild(backend: Backend, req: AttachRequest, guest: Guest) -> None:
    """Undo of a replace: the previous attachment again, as it was asked (lock held)."""
    bridge = backend.bridge_info(req.bridge)
    if bridge is None:
        raise NotFound(f'bridge "{req.bridge}" of the previous attachment is gone')
    work = _Work(0, req, UndoStack("", ""))
    failures: list[BaseException] = []
    try:
        _build(backend, work, bridge, guest)
    except BaseException as exc:
        raise work.undo.fail(exc) from None
    _add_ports(backend, bridge, [work], lambda w, e: failures.append(w.undo.fail(e)))
    if failures:
        raise failures[0]
    try:
        _configure(backend, work)
    except BaseException as exc:
        raise work.undo.fail(exc) from None


def _apply_statics(backend: Backend, undo: UndoStack, guest: Guest, req: AttachRequest,
                   mac: str, datapath: Callable[[], None] = lambda: None) -> None:
    for item in req.plan.statics:
        backend.add_address(guest.netns_path, req.ifname, item.interface)
    undo.step_done("addresses")
    for item in req.plan.statics:
        if item.gateway is not None:
            _replace_default(backend, undo, guest, req.ifname, item)
    undo.step_done("routes")
    datapath()
    for item in req.plan.statics:
        if item.version == 4:
            backend.announce(guest.netns_path, req.ifname, item.interface, mac)
    undo.step_done("announce")


def _replace_default(backend: Backend, undo: UndoStack, guest: Guest, ifname: str,
                     item: StaticAddress) -> None:
    assert item.gateway is not None
    before = backend.default_route(guest.netns_path, item.version)
    backend.replace_default_route(guest.netns_path, ifname, item.gateway,
                                  not item.gateway_on_link)
    if before is not None:
        undo.push(f"restore default route via {before.gateway}",
                  lambda: backend.restore_default_route(guest.netns_path, before))


def _apply_dhcp(backend: Backend, undo: UndoStack, guest: Guest, req: AttachRequest,
                mac: str) -> dict[str, Any]:
    before = backend.default_route(guest.netns_path, 4)
    lease = backend.dhcp_acquire(
        guest.netns_path, req.ifname, mac=mac, hostname=dhcp_hostname(req, guest),
        client_id=b"\x01" + bytes.fromhex(mac.replace(":", "")), timeout=req.dhcp_timeout,
    )
    undo.push("release the DHCP lease",
              lambda: backend.dhcp_release(guest.netns_path, req.ifname, lease))
    undo.step_done("dhcp-lease")
    backend.dhcp_apply(guest.netns_path, req.ifname, lease, req.default_route)
    undo.push("remove the leased address",
              lambda: backend.dhcp_unapply(guest.netns_path, req.ifname, lease))
    if before is not None and req.default_route:
        undo.push("restore the default route",
                  lambda: backend.restore_default_route(guest.netns_path, before))
    undo.step_done("dhcp-apply")
    if req.dns and guest.resolv_conf:
        backend.write_resolv_conf(guest.resolv_conf, lease)
    backend.daemon_hold(guest, req.ifname, lease, {
        "bridge": req.bridge, "default_route": req.default_route, "dns": req.dns,
        "resolv_conf": guest.resolv_conf if req.dns else None,
        "hostname": dhcp_hostname(req, guest),
    })
    undo.push("drop the lease from the daemon",
              lambda: backend.daemon_drop(guest.key, req.ifname, False))
    undo.step_done("dhcp-hold")
    data: dict[str, Any] = lease.to_dict() if hasattr(lease, "to_dict") else dict(lease)
    return data


def _external_ids(guest: Guest, req: AttachRequest, mac: str, mtu: int | None,
                  fingerprint: str, addresses: tuple[str, ...]) -> dict[str, str]:
    ids = {
        naming.K_OWNER: naming.OWNER,
        naming.K_GUEST_KIND: guest.kind,
        naming.K_CONTAINER_ID: guest.key,
        naming.K_CONTAINER_NAME: guest.name,
        naming.K_IFNAME: req.ifname,
        naming.K_NETNS_INODE: str(guest.netns_inode),
        naming.K_MAC: mac,
        naming.K_ADDRESSES: ",".join(addresses),
        naming.K_MODE: req.plan.mode,
        naming.K_CONFIG: fingerprint,
        naming.K_REQUEST: json.dumps(req.to_dict(), sort_keys=True, separators=(",", ":")),
        naming.K_CREATED_AT: f"{time.time():.3f}",
    }
    if guest.pid is not None:
        ids[naming.K_PID] = str(guest.pid)
    if mtu:
        ids[naming.K_MTU] = str(mtu)
    return ids


def _recorded_request(port: OvsPort) -> AttachRequest | None:
    raw = port.external_ids.get(naming.K_REQUEST)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return build_attach_request({**data, "replace": False, "create_bridge": False})
    except (ValueError, TypeError, OvsbridgeError):
        log.warning("port %s records a request that no longer parses", port.port)
        return None


def _same_netns(port: OvsPort, guest: Guest) -> bool:
    return port.external_ids.get(naming.K_NETNS_INODE) == str(guest.netns_inode)


def _healthy(backend: Backend, port: OvsPort, guest: Guest) -> bool:
    """A complete attachment in the guest's current netns, with both veth ends there."""
    ids = port.external_ids
    if not _same_netns(port, guest):
        return False
    if not _link_is(backend.host_link_alias(port.port), port, naming.ALIAS_READY):
        return False
    return backend.guest_link(guest.netns_path, ids.get(naming.K_IFNAME, "")) is not None


def _link_is(alias: str | None, port: OvsPort, state: str | None = None) -> bool:
    """Does the host link's ALIAS prove it is PORT's (and in STATE, if given)?"""
    if alias is None:
        return False
    ids = port.external_ids
    key, ifname = ids.get(naming.K_CONTAINER_ID, ""), ids.get(naming.K_IFNAME, "")
    parsed = naming.parse_link_alias(alias)
    if parsed is None:
        # NOTE: attachments made before links carried an identity: only the default name,
        # which is derived from the guest and ifname, proves the link is this one.
        return alias == "" and port.port == naming.host_ifname(key, ifname) and state != \
            naming.ALIAS_BUILDING
    return parsed[1:] == (key, ifname) and (state is None or parsed[0] == state)


def _delete_own_link(backend: Backend, name: str, key: str, ifname: str) -> bool:
    """Delete host link NAME if its identity (in whatever state) is KEY's IFNAME."""
    alias = backend.host_link_alias(name)
    parsed = naming.parse_link_alias(alias)
    if alias is None or parsed is None or parsed[1:] != (key, ifname):
        return False
    return backend.delete_host_link(name, alias)


def _recorded_addresses(port: OvsPort) -> tuple[str, ...]:
    text = port.external_ids.get(naming.K_ADDRESSES, "")
    return tuple(a for a in text.split(",") if a)


def _recorded_mtu(port: OvsPort) -> int | None:
    text = port.external_ids.get(naming.K_MTU, "")
    return int(text) if text.isdigit() else None


def _describe(guest: Guest) -> str:
    return f'container "{guest.name}"' if guest.kind == "docker" else f'guest "{guest.name}"'


def _result(status: str, bridge: str, port: str, guest: Guest, req: AttachRequest, mac: str,
            mtu: int | None, addresses: tuple[str, ...],
            lease: dict[str, Any] | None = None) -> AttachResult:
    return AttachResult(status, bridge, port, guest.name, guest.key, req.ifname, mac, mtu,
                        req.vlan, req.plan.mode, addresses, lease)


# ----- detach -----------------------------------------------------------------------------
def _remove_attachment(backend: Backend, port: OvsPort, guest: Guest | None) -> list[str]:
    """Take one attachment down: lease, port, host veth (only if it is provably this one's;
    its guest end goes with it). Idempotent. Returns notes for what was left alone."""
    ids = port.external_ids
    key = ids.get(naming.K_CONTAINER_ID, "")
    ifname = ids.get(naming.K_IFNAME, "")
    notes = []
    if ids.get(naming.K_MODE) == "dhcp" or ipv6.holds_dhcp6(port):
        backend.daemon_drop(key, ifname, True)
    backend.del_ports([port.port])
    alias = backend.host_link_alias(port.port)
    if _link_is(alias, port):
        backend.delete_host_link(port.port, alias)
    elif alias is not None:
        notes.append(f"left host interface {port.port} alone: it is not this attachment's "
                     f"any more")
        if guest is not None and _same_netns(port, guest):
            _delete_guest_end(backend, guest, ifname)
    elif guest is not None and _same_netns(port, guest):
        _delete_guest_end(backend, guest, ifname)
    if ids.get(ovn_ops.K_OVN_PORT):
        notes += [n for n in [ovn_ops.detach_release(backend, ids)] if n.startswith("kept")]
    return notes


def _delete_guest_end(backend: Backend, guest: Guest, ifname: str) -> None:
    link = backend.guest_link(guest.netns_path, ifname)
    if link is not None:
        backend.delete_guest_link(guest.netns_path, ifname)


def detach(backend: Backend, spec: GuestSpec, ifname: str | None,
           all_ifaces: bool) -> DetachResult:
    guest: Guest | None
    try:
        guest = backend.resolve_guest(spec)
    except (NotFound, Conflict):
        guest = None  # gone or stopped: detach what OVS still records for it
    matches = _find_for_detach(backend, spec, guest)
    if not all_ifaces:
        wanted = ifname or "eth1"
        matches = [p for p in matches if p.external_ids.get(naming.K_IFNAME) == wanted]
    removed = []
    notes: list[str] = []
    for port in matches:
        key = port.external_ids.get(naming.K_CONTAINER_ID, "")
        name = port.external_ids.get(naming.K_IFNAME, "")
        with backend.guest_lock(key, name):
            # Re-read under the lock: a concurrent attach or detach may have changed it.
            current = [p for p in attachments_of(backend, key, name) if p.port == port.port]
            if not current:
                continue
            notes += _remove_attachment(backend, current[0], guest)
        removed.append((port.bridge, port.port, name))
    label = guest.name if guest else str(spec)
    return DetachResult(label, tuple(removed), tuple(notes))


def detach_many(backend: Backend, specs: Sequence[GuestSpec], ifname: str | None,
                all_ifaces: bool, progress: Progress | None = None) -> list[Any]:
    """detach for each guest; one DetachResult or OvsbridgeError per guest, in order."""
    out: list[Any] = [None] * len(specs)

    # NOTE: detach waits on the kernel (a veth's deletion waits for RCU): MAX_WORKERS.
    inner = contextlib.nullcontext if len(specs) == 1 else backend.session

    def one(index: int) -> None:
        try:
            with inner():
                out[index] = detach(backend, specs[index], ifname, all_ifaces)
        except Exception as exc:
            out[index] = _domain(exc)
        if progress is not None:
            progress(index, out[index])

    _each(one, list(range(len(specs))), MAX_WORKERS, backend.session)
    return out


def detach_ports(backend: Backend, bridge: str, names: tuple[str, ...]) -> list[str]:
    """Take ovsbridge's ports NAMES off BRIDGE as detach does (leases released too)."""
    done = []
    for port in backend.ports(bridge):
        if port.port in names and ours(port):
            _remove_attachment(backend, port, None)
            done.append(port.port)
    return done


def _find_for_detach(backend: Backend, spec: GuestSpec, guest: Guest | None) -> list[OvsPort]:
    if guest is not None:
        return attachments_of(backend, guest.key)
    ports = backend.ports(None, {naming.K_OWNER: naming.OWNER})
    ref = spec.ref
    out = []
    for p in ports:
        ids = p.external_ids
        if ids.get(naming.K_GUEST_KIND, "docker") != spec.kind:
            continue
        cid = ids.get(naming.K_CONTAINER_ID, "")
        if ref in (cid, ids.get(naming.K_CONTAINER_NAME)) or (
            spec.kind == "docker" and len(ref) >= 12 and cid.startswith(ref)
        ):
            out.append(p)
    return out
