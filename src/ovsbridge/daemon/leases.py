"""The lease keeper: every DHCP lease of every guest, kept alive in one asyncio loop.

One entry per (guest key, ifname). Each entry runs a small task: BOUND until T1, then
RENEWING (unicast REQUEST to the server), REBINDING at T2 (broadcast), and at expiry the
address is removed and the entry goes back to INIT (DISCOVER, with backoff). A DHCPNAK
removes the address at once and discovers again; a new address replaces the old one (and
its routes). Every change is persisted as JSON under the state dir, so a restarted keeper
resumes each lease with an INIT-REBOOT for the same address and leaves it configured.

Each guest's process is watched (pidfd; a named netns is polled by inode). When it exits the
entry's task is cancelled, which closes its sockets at once, so the kernel can free the
network namespace and its veth; the entry and its file are dropped. Side effects happen
through the ``DhcpPort`` seam (``SystemDhcp`` in production, fakes in unit tests) and the
files of ``LeaseStore``. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovsbridge.errors import BadInput, OvsbridgeError
from ovsbridge.system.dhcp import GuestGone, Lease, LeaseRefused
from ovsbridge.system.dhcp6 import Lease6, is_lease6

AnyLease = Lease | Lease6

log = logging.getLogger(__name__)

RENEW_TRY = 10.0  # seconds one RENEWING/REBINDING exchange waits for an answer
RETRY_MIN = 10.0  # RFC 2131 says 60 s minimum between retries; short leases need less
ACQUIRE_TIMEOUT = 30.0
INIT_BACKOFF = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
NETNS_POLL = 1.0  # seconds between inode checks of a named netns
MAX_CONCURRENT_EXCHANGES = 16
TASK_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # restarts of a lease task that failed
SAVE_RETRY = 10.0  # seconds between tries to save a lease state that could not be saved
MAX_STATE_FILE = 1 << 20  # a lease record is a few hundred bytes; more is not ours


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestRef:
    """Whose netns a lease lives in (the ``Guest`` of model.py, as the daemon receives it)."""

    kind: str
    key: str
    name: str
    pid: int | None
    netns_path: str
    netns_inode: int
    resolv_conf: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuestRef:
        try:
            if not isinstance(data, dict):
                raise TypeError(f"a guest record is a JSON object, not {type(data).__name__}")
            kind = _str(data, "kind")
            if kind not in ("docker", "netns", "pid"):
                raise ValueError(f"'kind' {kind!r} is not docker, netns or pid")
            pid = data.get("pid")
            if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)
                                    or not 0 <= pid <= _PID_MAX):
                raise ValueError("'pid' is not a process id")
            inode = data["netns_inode"]
            if isinstance(inode, bool) or not isinstance(inode, int) or not 0 < inode < 2**64:
                raise ValueError("'netns_inode' is not an inode number")
            netns_path = _str(data, "netns_path")
            if not netns_path.startswith("/") or "\0" in netns_path:
                raise ValueError("'netns_path' is not an absolute path")
            name = data.get("name") or data["key"]
            resolv_conf = data.get("resolv_conf") or None
            if resolv_conf is not None and not isinstance(resolv_conf, str):
                raise TypeError("'resolv_conf' is not a string")
            return cls(
                kind=kind,
                key=_str(data, "key"),
                name=name if isinstance(name, str) else str(data["key"]),
                pid=pid or None,
                netns_path=netns_path,
                netns_inode=inode,
                resolv_conf=resolv_conf,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"malformed guest record: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "name": self.name,
            "pid": self.pid,
            "netns_path": self.netns_path,
            "netns_inode": self.netns_inode,
            "resolv_conf": self.resolv_conf,
        }


@dataclass(frozen=True)
class HoldOptions:
    default_route: bool = True
    dns: bool = True
    resolv_conf: str | None = None  # the container's own resolv.conf, rewritten on DNS change
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HoldOptions:
        if data is not None and not isinstance(data, dict):
            raise BadInput(f"malformed hold options: a JSON object, not {type(data).__name__}")
        data = dict(data or {})
        resolv_conf = data.get("resolv_conf")
        if resolv_conf is not None and not isinstance(resolv_conf, str):
            raise BadInput("malformed hold options: 'resolv_conf' is not a string")
        return cls(
            default_route=bool(data.pop("default_route", True)),
            dns=bool(data.pop("dns", True)),
            resolv_conf=data.pop("resolv_conf", None) or None,
            extra=data,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "default_route": self.default_route,
            "dns": self.dns,
            "resolv_conf": self.resolv_conf,
        }


_PID_MAX = 1 << 22  # the kernel's largest pid_max


def _str(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key!r} is not a non-empty string")
    return value


def entry_key(guest_key: str, ifname: str, family: int = 4) -> str:
    # NOTE: a DHCPv4 and a DHCPv6 lease may live on the same interface; v4 keeps the old
    # key, so state files written before DHCPv6 existed still resume under it.
    return f"{guest_key}/{ifname}" if family == 4 else f"{guest_key}/{ifname}#{family}"


def family_of(lease: AnyLease) -> int:
    return 6 if isinstance(lease, Lease6) else 4


def lease_from_record(data: dict[str, Any]) -> AnyLease:
    """A persisted or received lease of either family (DHCPv6 ones carry ``family: 6``)."""
    return Lease6.from_dict(data) if is_lease6(data) else Lease.from_dict(data)


# --------------------------------------------------------------------------------------------
# Seams
# --------------------------------------------------------------------------------------------


class DhcpPort(Protocol):
    """What the keeper needs from DHCP and netlink, for one guest interface at a time."""

    async def acquire(
        self, guest: GuestRef, ifname: str, like: Lease, requested: Any | None = None
    ) -> Lease: ...

    async def renew(
        self, guest: GuestRef, ifname: str, lease: Lease, *, rebind: bool
    ) -> Lease | None: ...

    async def reboot(self, guest: GuestRef, ifname: str, lease: Lease) -> Lease | None: ...

    async def apply(
        self,
        guest: GuestRef,
        ifname: str,
        lease: Lease,
        *,
        default_route: bool,
        previous: Lease | None,
    ) -> None: ...

    async def unapply(self, guest: GuestRef, ifname: str, lease: Lease) -> None: ...

    async def release(self, guest: GuestRef, ifname: str, lease: Lease) -> None: ...

    def write_resolv_conf(self, path: str, lease: Lease) -> None: ...


class SystemDhcp:
    """The real DhcpPort: system.dhcp, with every netns entry checked against the inode."""

    # NOTE: no thread per lease and no blocking call on the loop. The DHCP sockets are
    # non-blocking and served by this loop (pyroute2's put/get use loop.sock_sendall /
    # sock_recv, i.e. add_reader). Only what must happen *inside* the guest's netns (making
    # the sockets, netlink address/route changes) runs in a short-lived thread that setns()-es
    # and exits, awaited through a future; a thread pool cannot be used, as its threads would
    # stay in a guest's netns. Sockets exist only during an exchange (seconds every T1), so
    # an idle lease costs a task and a few objects, and pins no netns.

    def __init__(self, acquire_timeout: float = ACQUIRE_TIMEOUT, renew_try: float = RENEW_TRY):
        self.acquire_timeout = acquire_timeout
        self.renew_try = renew_try

    async def acquire(
        self, guest: GuestRef, ifname: str, like: Any, requested: Any | None = None
    ) -> Any:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(like, Lease6):
            return await dhcp6.acquire_async(
                guest.netns_path, ifname, mac=like.mac, iaid=like.iaid,
                timeout=self.acquire_timeout, requested=requested,
                netns_inode=guest.netns_inode,
            )
        return await dhcp.acquire_async(
            guest.netns_path,
            ifname,
            mac=like.mac,
            hostname=like.hostname,
            client_id=like.client_id_bytes,
            timeout=self.acquire_timeout,
            requested=requested,
            netns_inode=guest.netns_inode,
        )

    async def renew(
        self, guest: GuestRef, ifname: str, lease: Any, *, rebind: bool
    ) -> Any:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(lease, Lease6):
            return await dhcp6.renew_async(
                guest.netns_path, ifname, lease, rebind=rebind, timeout=self.renew_try,
                netns_inode=guest.netns_inode,
            )
        return await dhcp.renew_async(
            guest.netns_path,
            ifname,
            lease,
            rebind=rebind,
            timeout=self.renew_try,
            netns_inode=guest.netns_inode,
        )

    async def reboot(self, guest: GuestRef, ifname: str, lease: Any) -> Any:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(lease, Lease6):
            return await dhcp6.reboot_async(
                guest.netns_path, ifname, lease, netns_inode=guest.netns_inode
            )
        return await dhcp.reboot_async(
            guest.netns_path, ifname, lease, netns_inode=guest.netns_inode
        )

    async def apply(
        self,
        guest: GuestRef,
        ifname: str,
        lease: Any,
        *,
        default_route: bool,
        previous: Any | None,
    ) -> None:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(lease, Lease6):
            await dhcp6.apply_lease_async(
                guest.netns_path, ifname, lease,
                previous=previous if isinstance(previous, Lease6) else None,
                netns_inode=guest.netns_inode,
            )
            return
        await dhcp.apply_lease_async(
            guest.netns_path,
            ifname,
            lease,
            default_route=default_route,
            previous=previous,
            netns_inode=guest.netns_inode,
        )

    async def unapply(self, guest: GuestRef, ifname: str, lease: Any) -> None:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(lease, Lease6):
            await dhcp6.unapply_lease_async(
                guest.netns_path, ifname, lease, netns_inode=guest.netns_inode
            )
            return
        await dhcp.unapply_lease_async(
            guest.netns_path, ifname, lease, netns_inode=guest.netns_inode
        )

    async def release(self, guest: GuestRef, ifname: str, lease: Any) -> None:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(lease, Lease6):
            await dhcp6.release_async(
                guest.netns_path, ifname, lease, netns_inode=guest.netns_inode
            )
            return
        await dhcp.release_async(guest.netns_path, ifname, lease, netns_inode=guest.netns_inode)

    def write_resolv_conf(self, path: str, lease: Any) -> None:
        from ovsbridge.system import dhcp, dhcp6

        if isinstance(lease, Lease6):
            dhcp6.write_resolv_conf(path, lease)
            return
        dhcp.write_resolv_conf(path, lease)


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        """Sleep SECONDS or until WAKE is set (then clear it)."""


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        if seconds > 0 and not wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


class LeaseStore:
    """One JSON file per entry under DIRECTORY (0700; files 0600, written atomically).

    A file that cannot be read as a lease record is moved aside (``NAME.bad``, kept for a
    post-mortem) with one log line, and never stops the daemon.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def ensure(self) -> None:
        from ovsbridge.system.files import ensure_private_dir

        ensure_private_dir(self.directory, "lease state directory")

    def path_for(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return os.path.join(self.directory, f"{digest}.json")

    def save(self, key: str, record: dict[str, Any]) -> None:
        self.ensure()
        path = self.path_for(key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, sort_keys=True, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def delete(self, key: str) -> None:
        """Remove KEY's file; a failure (read-only state dir) is logged, never raised."""
        try:
            os.unlink(self.path_for(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("cannot remove lease state %s: %s", self.path_for(key),
                      exc.strerror or exc)

    def move_aside(self, path: str, why: str) -> None:
        """Rename PATH to PATH.bad (one log line), so the next start does not trip on it."""
        why = why if why.isprintable() else repr(why)
        try:
            os.replace(path, path + ".bad")
        except OSError as exc:
            log.error("malformed lease state %s (%s); cannot move it aside: %s",
                      path, why[:300], exc.strerror or exc)
            return
        log.error("malformed lease state %s moved aside to %s.bad: %s", path, path, why[:300])

    def load_entries(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, record) of every state file that holds a JSON object; the rest moved aside."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            path = os.path.join(self.directory, name)
            if name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    os.unlink(path)  # a write cut short by a crash
                continue
            if not name.endswith(".json"):
                continue
            record = self._read(path)
            if record is not None:
                records.append((path, record))
        return records

    def load_all(self) -> list[dict[str, Any]]:
        return [record for _, record in self.load_entries()]

    def _read(self, path: str) -> dict[str, Any] | None:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_STATE_FILE + 1)
        except OSError as exc:
            log.error("cannot read lease state %s: %s", path, exc.strerror or exc)
            return None
        if len(data) > MAX_STATE_FILE:
            self.move_aside(path, f"larger than {MAX_STATE_FILE} bytes")
            return None
        try:
            record = json.loads(data)
        except (ValueError, RecursionError) as exc:  # garbage, bad UTF-8, deep nesting
            self.move_aside(path, f"not JSON: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        if not isinstance(record, dict):
            self.move_aside(path, f"a JSON {type(record).__name__}, not an object")
            return None
        return record


# --------------------------------------------------------------------------------------------
# Guest watching
# --------------------------------------------------------------------------------------------


def guest_alive(guest: GuestRef) -> bool:
    """Is the guest's netns still the one the lease was taken in?"""
    path = f"/proc/{guest.pid}/ns/net" if guest.pid else guest.netns_path
    try:
        return os.stat(path).st_ino == guest.netns_inode
    except OSError:
        return False


class GuestWatch:
    """Calls ON_GONE once when the guest's process exits (pidfd) or its named netns goes."""

    def __init__(self, guest: GuestRef, on_gone: Callable[[], None]) -> None:
        self.guest = guest
        self.on_gone = on_gone
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._fired = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.guest.pid:
            try:
                self._pidfd = os.pidfd_open(self.guest.pid)
            except ProcessLookupError:
                loop.call_soon(self._fire)
                return
            # NOTE: check the netns only after the pidfd is open: the pidfd names this very
            # process, so a PID reused after the check cannot fool us.
            if not guest_alive(self.guest):
                loop.call_soon(self._fire)
                return
            loop.add_reader(self._pidfd, self._fire)
        else:
            self._poller = loop.create_task(self._poll(), name=f"watch {self.guest.netns_path}")

    async def _poll(self) -> None:
        while guest_alive(self.guest):
            await asyncio.sleep(NETNS_POLL)
        self._fire()

    def _fire(self) -> None:
        if self._fired:
            return
        self._fired = True
        self.close()
        self.on_gone()

    def close(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None
        if self._poller is not None and self._poller is not asyncio.current_task():
            self._poller.cancel()
        self._poller = None


# --------------------------------------------------------------------------------------------
# The keeper
# --------------------------------------------------------------------------------------------


@dataclass
class Entry:
    guest: GuestRef
    ifname: str
    lease: Any  # Lease or Lease6 (AnyLease)
    options: HoldOptions
    state: str = "bound"  # bound | renewing | rebinding | rebooting | init
    renewals: int = 0
    last_error: str | None = None
    next_at: float | None = None
    task: asyncio.Task[None] | None = None
    watch: GuestWatch | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    resume: bool = False
    crash_error: str | None = None  # the task failed and waits to be restarted
    save_error: str | None = None  # the state could not be saved (read-only state dir...)
    restarts: int = 0
    kicked: bool = False  # kick() asked for now: ends a wait early, like a set ``wake``

    @property
    def family(self) -> int:
        return family_of(self.lease)

    @property
    def key(self) -> str:
        return entry_key(self.guest.key, self.ifname, self.family)

    @property
    def fault(self) -> str | None:
        """What is wrong with keeping this lease, beyond the DHCP server's answers."""
        return self.crash_error or self.save_error

    @property
    def shown_state(self) -> str:
        # NOTE: never "bound" while the task that keeps the lease is down or its state is not
        # saved: the DHCP state is in "dhcp_state", the reason in "error".
        return "error" if self.fault else self.state

    def record(self) -> dict[str, Any]:
        return {
            "version": 1,
            "guest": self.guest.to_dict(),
            "ifname": self.ifname,
            "lease": self.lease.to_dict(),
            "options": self.options.to_dict(),
            "state": "init" if self.state == "init" else "bound",
        }

    def status(self) -> dict[str, Any]:
        lease = self.lease
        bound = self.state != "init"
        return {
            "guest": {
                "key": self.guest.key,
                "name": self.guest.name,
                "kind": self.guest.kind,
                "pid": self.guest.pid,
            },
            "ifname": self.ifname,
            "family": self.family,
            "state": self.shown_state,
            "dhcp_state": self.state,
            "error": self.fault,
            "restarts": self.restarts,
            "address": lease.address.with_prefixlen if bound else None,
            "router": str(lease.router) if lease.router and bound else None,
            "server_id": str(lease.server_id),
            "mac": lease.mac,
            "hostname": lease.hostname,
            "lease_time": lease.lease_time,
            "obtained_at": lease.obtained_at,
            "expires_at": None if lease.infinite or not bound else lease.expires_at,
            "renew_at": None if lease.infinite or not bound else lease.renew_at,
            "rebind_at": None if lease.infinite or not bound else lease.rebind_at,
            "next_action_at": self.next_at,
            "renewals": self.renewals,
            "last_error": self.last_error,
        }


class LeaseKeeper:
    """Holds leases; call ``hold``/``drop``/``status`` from the daemon's loop."""

    def __init__(
        self,
        store: LeaseStore,
        dhcp: DhcpPort | None = None,
        clock: Clock | None = None,
        *,
        watch: bool = True,
    ) -> None:
        self.store = store
        self.dhcp: DhcpPort = dhcp or SystemDhcp()
        self.clock: Clock = clock or RealClock()
        self.watch = watch
        self.entries: dict[str, Entry] = {}
        self._exchanges: asyncio.Semaphore | None = None
        self.on_change: Callable[[Entry, str], None] | None = None  # (entry, event) for tests

    # -- public -------------------------------------------------------------------------------

    async def hold(self, guest: GuestRef, ifname: str, lease: AnyLease,
                   options: HoldOptions) -> Entry:
        """Start keeping LEASE (already configured by attach) on GUEST's IFNAME."""
        if lease.expired(self.clock.now()):
            raise BadInput(f"lease for {lease.address} on {ifname} has already expired")
        if self.watch and not guest_alive(guest):
            raise GuestGone(f"guest {guest.name} is gone (its netns is not {guest.netns_inode})")
        key = entry_key(guest.key, ifname, family_of(lease))
        old = self.entries.pop(key, None)
        if old is not None:
            await self._stop(old)
        entry = Entry(guest=guest, ifname=ifname, lease=lease, options=options)
        self.entries[key] = entry
        self._persist(entry)
        self._start(entry)
        log.info("holding %s on %s of %s", lease.address, ifname, guest.name)
        return entry

    async def drop(self, guest_key: str, ifname: str, *, release: bool = True) -> Any:
        """Stop keeping the leases (DHCPv4 and DHCPv6) of IFNAME; with RELEASE send
        DHCPRELEASE / RELEASE. The DHCPv4 lease (else the DHCPv6 one), or None."""
        dropped = []
        for family in (4, 6):
            key = entry_key(guest_key, ifname, family)
            entry = self.entries.pop(key, None)
            self.store.delete(key)
            if entry is None:
                continue
            await self._stop(entry)
            if release and entry.state != "init":
                # best effort; the netns is entered only if its inode is still the guest's
                await self.dhcp.release(entry.guest, ifname, entry.lease)
            log.info("dropped %s on %s of %s", entry.lease.address, ifname, entry.guest.name)
            dropped.append(entry.lease)
        return dropped[0] if dropped else None

    def kick(self, guest_key: str, ifname: str) -> bool:
        """Renew now (like dhclient's SIGUSR1): the entry's T1 is treated as passed."""
        kicked = False
        for family in (4, 6):
            entry = self.entries.get(entry_key(guest_key, ifname, family))
            if entry is None:
                continue
            entry.state = "renewing" if entry.state == "bound" else entry.state
            entry.kicked = True
            entry.wake.set()
            kicked = True
        return kicked

    def status(self) -> list[dict[str, Any]]:
        return [self.entries[k].status() for k in sorted(self.entries)]

    async def resume(self) -> int:
        """Load persisted entries; each starts with an INIT-REBOOT. Returns how many.

        A file that is not a lease record (wrong types, garbage, deep nesting) is moved aside
        with one log line; it never stops the daemon.
        """
        count = 0
        for path, record in self.store.load_entries():
            try:
                entry = _entry_from_record(record)
            except Exception as exc:  # any shape of bad data: BadInput, TypeError, ...
                why = exc.message if isinstance(exc, OvsbridgeError) else f"{exc!r}"
                self.store.move_aside(path, why)
                continue
            if entry.key in self.entries:
                self.store.move_aside(path, f"a second record of {entry.key}")
                continue
            if self.watch and not guest_alive(entry.guest):
                log.info("guest %s is gone; forgetting %s on %s",
                         entry.guest.name, entry.lease.address, entry.ifname)
                self.store.delete(entry.key)
                continue
            if os.path.abspath(path) != os.path.abspath(self.store.path_for(entry.key)):
                self.store.move_aside(path, f"holds {entry.key}, whose file has another name")
                continue
            self.entries[entry.key] = entry
            self._start(entry)
            count += 1
        return count

    async def close(self) -> None:
        """Stop every task (no release: the leases stay persisted for the next start)."""
        entries = list(self.entries.values())
        self.entries.clear()
        await asyncio.gather(*(self._stop(e) for e in entries), return_exceptions=True)

    # -- internals ----------------------------------------------------------------------------

    def _start(self, entry: Entry) -> None:
        self.entries[entry.key] = entry
        if self.watch:
            entry.watch = GuestWatch(entry.guest, lambda: self._gone(entry))
            entry.watch.start()
        entry.task = asyncio.get_running_loop().create_task(
            self._keep(entry), name=f"lease {entry.key}"
        )

    async def _stop(self, entry: Entry) -> None:
        if entry.watch is not None:
            entry.watch.close()
        task = entry.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _gone(self, entry: Entry) -> None:
        # NOTE: runs in a loop callback; cancelling the task closes its sockets right away
        # (the socket closes in the exchange's finally, or the netns thread's result is
        # closed on arrival), so the guest's netns is not pinned by us.
        if self.entries.get(entry.key) is not entry:
            return
        log.info(
            "guest %s exited; letting go of %s on %s",
            entry.guest.name,
            entry.lease.address,
            entry.ifname,
        )
        del self.entries[entry.key]
        if entry.task is not None:
            entry.task.cancel()
        self.store.delete(entry.key)
        self._notify(entry, "gone")

    def _notify(self, entry: Entry, event: str) -> None:
        if self.on_change is not None:
            self.on_change(entry, event)

    def _persist(self, entry: Entry) -> bool:
        """Save the entry's state; a failure is kept in the entry (and logged once), never
        raised: keeping the lease alive matters more than the file. True when saved."""
        if self.entries.get(entry.key) is not entry:
            return True
        try:
            self.store.save(entry.key, entry.record())
        except (OSError, OvsbridgeError) as exc:
            # NOTE: without the file name: it is a fresh temporary one on every try, and the
            # same fault must give the same message (logged once, not once per retry)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else _describe(exc)
            message = f"cannot save the lease state in {self.store.directory}: {why}"
            if message != entry.save_error:
                log.error("%s: %s; retrying every %gs", entry.key, message, SAVE_RETRY)
            entry.save_error = message
            return False
        if entry.save_error:
            log.info("%s: lease state saved again", entry.key)
            entry.save_error = None
        return True

    async def _sleep_until(self, entry: Entry, when: float) -> None:
        # reaching a wait means the step before it went through: a restarted task is well
        entry.crash_error = None
        while entry.save_error and not entry.kicked and self.clock.now() < when:
            entry.next_at = min(when, self.clock.now() + SAVE_RETRY)
            await self.clock.sleep(entry.next_at - self.clock.now(), entry.wake)
            self._persist(entry)
        if entry.kicked:
            entry.kicked = False
            entry.wake.clear()
            return
        entry.next_at = when
        await self.clock.sleep(max(0.0, when - self.clock.now()), entry.wake)
        entry.kicked = False

    @property
    def exchanges(self) -> asyncio.Semaphore:
        if self._exchanges is None:
            self._exchanges = asyncio.Semaphore(MAX_CONCURRENT_EXCHANGES)
        return self._exchanges

    async def _keep(self, entry: Entry) -> None:
        """Run the entry's state machine; a failure restarts it with backoff (the lease is
        kept: its state and timers are in the entry), shown in status and the log."""
        failures = 0
        while self.entries.get(entry.key) is entry:
            started = self.clock.now()
            try:
                await self._run(entry)
                return
            except asyncio.CancelledError:
                raise
            except GuestGone as exc:
                log.info("%s: %s; dropping the entry", entry.key, exc.message)
                self._forget(entry)
                return
            except Exception as exc:  # a bug or a fault must not take the daemon down
                entry.crash_error = f"lease task failed: {_describe(exc)}"
                entry.restarts += 1
                log.exception("%s: %s; restarting it", entry.key, entry.crash_error)
            if self.clock.now() - started > 300:
                failures = 0
            delay = TASK_BACKOFF[min(failures, len(TASK_BACKOFF) - 1)]
            failures += 1
            entry.next_at = self.clock.now() + delay
            await self.clock.sleep(delay, entry.wake)
            if entry.state != "init" and entry.lease.expired(self.clock.now()):
                entry.state = "rebinding"  # the run's expiry step removes it

    def _forget(self, entry: Entry) -> None:
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
            self.store.delete(entry.key)
            if entry.watch is not None:
                entry.watch.close()
            self._notify(entry, "gone")

    async def _run(self, entry: Entry) -> None:
        if entry.state == "rebooting":
            await self._reboot(entry)
        while True:
            now = self.clock.now()
            lease = entry.lease
            if entry.state == "init":
                await self._init(entry)
            elif entry.state == "bound":
                if now >= lease.renew_at:
                    entry.state = "renewing"
                else:
                    await self._sleep_until(entry, lease.renew_at)
            elif entry.state == "renewing":
                if now >= lease.rebind_at:
                    entry.state = "rebinding"
                    continue
                await self._exchange(entry, rebind=False, until=lease.rebind_at)
            elif entry.state == "rebinding":
                if now >= lease.expires_at:
                    await self._expire(entry)
                    continue
                await self._exchange(entry, rebind=True, until=lease.expires_at)
            else:  # pragma: no cover - states are closed
                raise AssertionError(entry.state)

    async def _exchange(self, entry: Entry, *, rebind: bool, until: float) -> None:
        try:
            async with self.exchanges:
                new = await self.dhcp.renew(entry.guest, entry.ifname, entry.lease, rebind=rebind)
        except LeaseRefused as exc:
            await self._nak(entry, exc)
            return
        except GuestGone:
            raise
        except OvsbridgeError as exc:
            entry.last_error = exc.message
            new = None
        except OSError as exc:
            entry.last_error = str(exc)
            new = None
        if new is not None:
            await self._bound(entry, new, "rebound" if rebind else "renewed")
            return
        # NOTE: RFC 2131 4.4.5: with no answer, wait half the time left (to T2 when renewing,
        # to expiry when rebinding) before the next try; RETRY_MIN keeps short leases alive.
        now = self.clock.now()
        wait = max(RETRY_MIN, (until - now) / 2)
        await self._sleep_until(entry, min(until, now + wait))

    async def _bound(self, entry: Entry, new: Lease, event: str) -> None:
        old = entry.lease
        previous = old if entry.state != "init" else None
        await self.dhcp.apply(
            entry.guest,
            entry.ifname,
            new,
            default_route=entry.options.default_route,
            previous=previous,
        )
        dns_changed = (new.dns, new.domain) != (old.dns, old.domain) or entry.state == "init"
        entry.lease = new
        entry.state = "bound"
        entry.last_error = None
        entry.renewals += 1
        self._write_dns(entry, force=dns_changed)
        self._persist(entry)
        log.info("%s: %s %s until %s", entry.key, event, new.address, _clock(new.expires_at))
        self._notify(entry, event)

    def _write_dns(self, entry: Entry, *, force: bool) -> None:
        path = entry.options.resolv_conf
        if not (entry.options.dns and path and force):
            return
        try:
            self.dhcp.write_resolv_conf(path, entry.lease)
        except OvsbridgeError as exc:
            log.warning("%s: resolv.conf not updated: %s", entry.key, exc.message)

    async def _nak(self, entry: Entry, exc: OvsbridgeError) -> None:
        log.info("%s: %s; dropping %s and discovering", entry.key, exc.message, entry.lease.address)
        await self.dhcp.unapply(entry.guest, entry.ifname, entry.lease)
        entry.state = "init"
        entry.last_error = exc.message
        self._persist(entry)
        self._notify(entry, "nak")

    async def _expire(self, entry: Entry) -> None:
        log.info("%s: lease of %s expired; removing it", entry.key, entry.lease.address)
        await self.dhcp.unapply(entry.guest, entry.ifname, entry.lease)
        entry.state = "init"
        entry.last_error = "lease expired"
        self._persist(entry)
        self._notify(entry, "expired")

    async def _init(self, entry: Entry) -> None:
        delays = itertools.chain(INIT_BACKOFF, itertools.repeat(INIT_BACKOFF[-1]))
        for attempt, delay in enumerate(delays):
            try:
                async with self.exchanges:
                    new = await self.dhcp.acquire(entry.guest, entry.ifname, entry.lease)
            except GuestGone:
                raise
            except (OvsbridgeError, OSError) as exc:
                entry.last_error = getattr(exc, "message", str(exc))
                log.info(
                    "%s: no lease yet (attempt %d): %s", entry.key, attempt + 1, entry.last_error
                )
                jitter = random.uniform(0.8, 1.2)
                await self._sleep_until(entry, self.clock.now() + delay * jitter)
                continue
            await self._bound(entry, new, "bound")
            return

    async def _reboot(self, entry: Entry) -> None:
        lease = entry.lease
        try:
            async with self.exchanges:
                new = await self.dhcp.reboot(entry.guest, entry.ifname, lease)
        except LeaseRefused as exc:
            entry.state = "bound"  # what is configured is the old lease: remove it
            await self._nak(entry, exc)
            return
        except GuestGone:
            raise
        except (OvsbridgeError, OSError) as exc:
            entry.last_error = getattr(exc, "message", str(exc))
            new = None
        if new is not None:
            await self._bound(entry, new, "rebooted")
            return
        # NOTE: RFC 2131 3.2: with no answer to INIT-REBOOT the client may keep using an
        # unexpired lease; it stays configured (re-applied in case it was lost) and is
        # renewed at its T1 as usual.
        if lease.expired(self.clock.now()):
            entry.state = "bound"
            await self._expire(entry)
            return
        entry.state = "bound"
        await self.dhcp.apply(
            entry.guest,
            entry.ifname,
            lease,
            default_route=entry.options.default_route,
            previous=None,
        )
        self._persist(entry)
        self._notify(entry, "resumed")


def _entry_from_record(record: dict[str, Any]) -> Entry:
    """An Entry from a state file's record; raises on anything that is not one."""
    from ovsbridge.model import parse_ifname

    version = record.get("version", 1)
    if version != 1:
        raise BadInput(f"unknown lease state version {version!r}")
    state = record.get("state", "bound")
    if state not in ("bound", "init"):
        raise BadInput(f"unknown lease state {state!r}")
    ifname = record["ifname"]
    if not isinstance(ifname, str):
        raise BadInput("'ifname' is not a string")
    entry = Entry(
        guest=GuestRef.from_dict(record["guest"]),
        ifname=parse_ifname(ifname, "ifname"),
        lease=lease_from_record(record["lease"]),
        options=HoldOptions.from_dict(record.get("options")),
        resume=True,
    )
    entry.state = "init" if state == "init" else "rebooting"
    return entry


def _describe(exc: BaseException) -> str:
    """One printable line for EXC (an errno's text, our message, or the exception's type)."""
    if isinstance(exc, OvsbridgeError):
        text = exc.message
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.splitlines())[:300]
    return text if text.isprintable() else repr(text)


def _clock(when: float) -> str:
    if when == float("inf"):
        return "forever"
    return time.strftime("%H:%M:%S", time.localtime(when))
