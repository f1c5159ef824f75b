"""Small in-memory fakes for the lease keeper's unit tests: a DHCP port and a clock."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from ovsbridge.daemon.leases import GuestRef
from ovsbridge.system.dhcp import GuestGone, Lease, LeaseRefused

NAK = "nak"
GONE = "gone"


def make_lease(
    address: str = "203.0.113.10/24",
    *,
    obtained_at: float = 1000.0,
    lease_time: int = 120,
    t1: int = 60,
    t2: int = 105,
    dns: tuple[str, ...] = ("203.0.113.1",),
    domain: str | None = "lab.test",
) -> Lease:
    return Lease(
        address=IPv4Interface(address),
        router=IPv4Address("203.0.113.1"),
        dns=dns,
        domain=domain,
        lease_time=lease_time,
        renewal_time=t1,
        rebinding_time=t2,
        server_id=IPv4Address("203.0.113.1"),
        obtained_at=obtained_at,
        mac="02:00:00:00:00:01",
        hostname="web1",
        client_id="00776562",
        server_mac="02:00:00:00:00:fe",
    )


def make_guest(key: str = "c0ffee", **kw: Any) -> GuestRef:
    base: dict[str, Any] = dict(
        kind="netns", key=key, name=f"guest-{key}", pid=None,
        netns_path=f"/var/run/netns/{key}", netns_inode=4026530000,
    )
    base.update(kw)
    return GuestRef(**base)


class FakeClock:
    """Time moves only when the keeper sleeps: every sleep jumps to its end (or to a wake).

    A sleep longer than MAX_JUMP waits for its wake event instead (time stands still).
    """

    def __init__(self, now: float = 1000.0, max_jump: float | None = None) -> None:
        self.t = now
        self.max_jump = max_jump

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        if wake.is_set():
            wake.clear()
            return
        if self.max_jump is not None and seconds > self.max_jump:
            await wake.wait()
            wake.clear()
            return
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


class FakeDhcp:
    """Scripted answers: each queue holds a Lease, None (silence), NAK or GONE; when a queue is
    empty the server grants the same address again, starting now."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.renew_answers: deque[Any] = deque()
        self.reboot_answers: deque[Any] = deque()
        self.acquire_answers: deque[Any] = deque()
        self.calls: list[tuple[str, Any]] = []
        self.configured: dict[str, Lease] = {}  # ifname -> lease on the link
        self.released: list[Lease] = []
        self.resolv: dict[str, Lease] = {}

    def _answer(self, queue: deque[Any], lease: Lease) -> Lease | None:
        answer = queue.popleft() if queue else replace(lease, obtained_at=self.clock.now())
        if answer == NAK:
            raise LeaseRefused(f"DHCP server refused {lease.address.ip} (DHCPNAK)")
        if answer == GONE:
            raise GuestGone("network namespace is gone")
        if isinstance(answer, Exception):
            raise answer
        if hasattr(answer, "to_dict"):  # a Lease or a Lease6
            return replace(answer, obtained_at=self.clock.now())
        return None

    async def acquire(self, guest: GuestRef, ifname: str, like: Lease, requested: Any = None):
        self.calls.append(("acquire", ifname))
        return self._answer(self.acquire_answers, like) or _raise_no_offer(ifname)

    async def renew(self, guest: GuestRef, ifname: str, lease: Lease, *, rebind: bool):
        self.calls.append(("rebind" if rebind else "renew", ifname))
        return self._answer(self.renew_answers, lease)

    async def reboot(self, guest: GuestRef, ifname: str, lease: Lease):
        self.calls.append(("reboot", ifname))
        return self._answer(self.reboot_answers, lease)

    async def apply(self, guest, ifname, lease, *, default_route, previous):
        self.calls.append(("apply", ifname))
        if previous is not None and previous.address != lease.address:
            self.configured.pop(ifname, None)
        self.configured[ifname] = lease

    async def unapply(self, guest, ifname, lease):
        self.calls.append(("unapply", ifname))
        if ifname in self.configured and self.configured[ifname].address == lease.address:
            del self.configured[ifname]

    async def release(self, guest, ifname, lease):
        self.calls.append(("release", ifname))
        self.released.append(lease)

    def write_resolv_conf(self, path: str, lease: Lease) -> None:
        self.calls.append(("resolv", path))
        self.resolv[path] = lease

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def _raise_no_offer(ifname: str) -> Lease:
    from ovsbridge.errors import OperationFailed

    raise OperationFailed(f"no DHCP offer on {ifname} within 30 s")
