"""The lease keeper's decisions against a fake DHCP port and a fake clock: the final state
(what is configured, what is persisted, what the server was told), not timing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ovsbridge.daemon.leases import GuestRef, HoldOptions, LeaseKeeper, LeaseStore
from ovsbridge.system.dhcp import GuestGone

from .dhcp_fakes import GONE, NAK, FakeClock, FakeDhcp, make_guest, make_lease


class Rig:
    def __init__(self, tmp_path: Path, *, watch: bool = False) -> None:
        self.clock = FakeClock()
        self.dhcp = FakeDhcp(self.clock)
        self.store = LeaseStore(str(tmp_path / "leases"))
        self.events: list[str] = []
        self.keeper = self.new_keeper(watch=watch)

    def new_keeper(self, *, watch: bool = False) -> LeaseKeeper:
        keeper = LeaseKeeper(self.store, self.dhcp, self.clock, watch=watch)
        keeper.on_change = lambda entry, event: self.events.append(event)
        return keeper

    async def until(self, predicate: Callable[[], bool], limit: int = 10_000) -> None:
        for _ in range(limit):
            if predicate():
                return
            await asyncio.sleep(0)
        raise AssertionError(
            f"condition never met; last events {self.events[-5:]}, calls {self.dhcp.calls[-5:]}"
        )

    def files(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(Path(self.store.directory).glob("*"))]


def run(coro):
    return asyncio.run(coro)


def test_renews_at_t1_and_persists_the_new_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        rig.dhcp.configured["eth1"] = lease
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.until(lambda: rig.events.count("renewed") >= 2)
        await rig.keeper.close()

        assert rig.dhcp.kinds()[:2] == ["renew", "apply"]
        [record] = rig.files()
        assert record["lease"]["obtained_at"] >= lease.obtained_at + 2 * 60
        assert record["state"] == "bound"
        assert rig.dhcp.configured["eth1"].address == lease.address

    run(scenario())


def test_silence_at_t1_rebinds_at_t2(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        # server silent for every unicast try between T1 and T2 (at 60, 82.5, 93.75, 103.75 s)
        rig.dhcp.renew_answers.extend([None, None, None, None])
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.until(lambda: "rebound" in rig.events)
        await rig.keeper.close()

        kinds = [k for k in rig.dhcp.kinds() if k in ("renew", "rebind")]
        assert kinds[:5] == ["renew", "renew", "renew", "renew", "rebind"]
        assert rig.clock.now() >= lease.rebind_at

    run(scenario())


def test_nak_removes_the_address_then_discovers_and_applies_the_new_one(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        new = make_lease("203.0.113.77/24", dns=("203.0.113.53",))
        rig.dhcp.configured["eth1"] = lease
        rig.dhcp.renew_answers.append(NAK)
        rig.dhcp.acquire_answers.append(new)
        await rig.keeper.hold(
            make_guest(), "eth1", lease, HoldOptions(resolv_conf="/tmp/obt-resolv")
        )
        await rig.until(lambda: "bound" in rig.events)
        await rig.keeper.close()

        assert rig.events[:2] == ["nak", "bound"]
        kinds = rig.dhcp.kinds()
        assert kinds.index("unapply") < kinds.index("acquire") < kinds.index("apply")
        assert rig.dhcp.configured["eth1"].address == new.address
        assert rig.dhcp.resolv["/tmp/obt-resolv"].dns == ("203.0.113.53",)
        assert rig.files()[0]["lease"]["address"] == "203.0.113.77/24"

    run(scenario())


def test_expiry_removes_the_address_and_keeps_discovering(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        rig.dhcp.configured["eth1"] = lease
        rig.dhcp.renew_answers.extend([None] * 50)
        rig.dhcp.acquire_answers.extend([None, None])  # no offer twice, then one
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.until(lambda: "bound" in rig.events)
        await rig.keeper.close()

        assert rig.events[0] == "expired"
        assert rig.dhcp.kinds().count("acquire") == 3
        assert rig.clock.now() >= lease.expires_at
        assert "eth1" in rig.dhcp.configured  # the third DISCOVER got an address back

    run(scenario())


def test_expired_state_is_persisted_and_resumed_in_init(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        rig.dhcp.renew_answers.extend([None] * 50)
        rig.dhcp.acquire_answers.extend([None] * 3)
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.until(lambda: "expired" in rig.events)
        await rig.keeper.close()
        assert rig.files()[0]["state"] == "init"

        again = rig.new_keeper()
        assert await again.resume() == 1
        await rig.until(lambda: rig.events.count("bound") == 1)
        await again.close()
        assert "reboot" not in rig.dhcp.kinds()

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "event", "address"),
    [
        (None, "rebooted", "203.0.113.10/24"),  # ACK: same address confirmed
        (NAK, "bound", "203.0.113.99/24"),  # NAK: removed, discovered a new one
        ("silence", "resumed", "203.0.113.10/24"),  # nobody answers: keep the valid lease
    ],
)
def test_resume_starts_with_init_reboot(tmp_path: Path, answer, event, address) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.keeper.close()  # as if the daemon were killed: the file stays
        rig.dhcp.calls.clear()
        rig.dhcp.configured["eth1"] = lease
        if answer is NAK:
            rig.dhcp.reboot_answers.append(NAK)
            rig.dhcp.acquire_answers.append(make_lease("203.0.113.99/24"))
        elif answer == "silence":
            rig.dhcp.reboot_answers.append(None)

        keeper = rig.new_keeper()
        assert await keeper.resume() == 1
        await rig.until(lambda: event in rig.events)
        await keeper.close()

        assert rig.dhcp.kinds()[0] == "reboot"
        assert rig.dhcp.configured["eth1"].address.with_prefixlen == address
        assert rig.files()[0]["lease"]["address"] == address

    run(scenario())


def test_resume_of_an_expired_lease_with_no_answer_removes_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.keeper.close()
        rig.clock.t += 500  # the daemon was down for longer than the lease
        rig.dhcp.configured["eth1"] = lease
        rig.dhcp.reboot_answers.append(None)
        rig.dhcp.acquire_answers.extend([None] * 5)

        keeper = rig.new_keeper()
        await keeper.resume()
        await rig.until(lambda: "expired" in rig.events)
        await keeper.close()
        assert "eth1" not in rig.dhcp.configured

    run(scenario())


def test_drop_releases_and_forgets(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())

        assert await rig.keeper.drop("c0ffee", "eth1", release=False) == lease
        assert rig.dhcp.released == []
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.keeper.drop("c0ffee", "eth1", release=True)
        assert await rig.keeper.drop("c0ffee", "eth1") is None
        await rig.keeper.close()

        assert rig.keeper.status() == [] and rig.files() == []

    run(scenario())


def test_hold_again_replaces_the_entry(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        first = make_lease(obtained_at=rig.clock.now())
        second = make_lease("203.0.113.11/24", obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", first, HoldOptions())
        await rig.keeper.hold(make_guest(), "eth1", second, HoldOptions(default_route=False))
        [status] = rig.keeper.status()
        await rig.keeper.close()

        assert status["address"] == "203.0.113.11/24"
        [record] = rig.files()
        assert record["options"]["default_route"] is False

    run(scenario())


def test_guest_gone_during_renewal_drops_the_entry(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        rig.dhcp.renew_answers.append(GONE)
        await rig.keeper.hold(make_guest(), "eth1", make_lease(obtained_at=1000.0), HoldOptions())
        await rig.until(lambda: "gone" in rig.events)
        await rig.keeper.close()
        assert rig.keeper.entries == {} and rig.files() == []

    run(scenario())


def test_hold_refuses_an_expired_lease_and_a_dead_guest(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        with pytest.raises(Exception, match="already expired"):
            await rig.keeper.hold(make_guest(), "eth1", make_lease(obtained_at=0.0), HoldOptions())
        watching = rig.new_keeper(watch=True)
        with pytest.raises(GuestGone):
            await watching.hold(make_guest(), "eth1", make_lease(obtained_at=1000.0),
                                HoldOptions())
        assert rig.files() == []

    run(scenario())


def test_status_lists_each_lease_with_expiry_and_next_renewal(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        [status] = rig.keeper.status()
        await rig.keeper.close()

        assert status["guest"]["key"] == "c0ffee" and status["ifname"] == "eth1"
        assert status["address"] == "203.0.113.10/24" and status["state"] == "bound"
        assert status["expires_at"] == lease.expires_at and status["renew_at"] == lease.renew_at

    run(scenario())


def test_kick_renews_now(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        rig.clock.max_jump = 1000  # T1 is half a day away: time stands still
        lease = make_lease(obtained_at=rig.clock.now(), lease_time=86400, t1=43200, t2=75600)
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        for _ in range(5):
            await asyncio.sleep(0)
        assert rig.events == [] and rig.keeper.status()[0]["next_action_at"] == lease.renew_at
        assert rig.keeper.kick("c0ffee", "eth1")
        await rig.until(lambda: "renewed" in rig.events)
        await rig.keeper.close()
        assert not rig.keeper.kick("c0ffee", "eth1")

    run(scenario())


def test_store_survives_a_torn_write_and_ignores_junk(tmp_path: Path) -> None:
    store = LeaseStore(str(tmp_path / "leases"))
    store.save("k/eth1", {"a": 1})
    (tmp_path / "leases" / ".tmp-half.json").write_text('{"a"')
    (tmp_path / "leases" / "junk.json").write_text("not json")
    assert store.load_all() == [{"a": 1}]
    assert not (tmp_path / "leases" / ".tmp-half.json").exists()
    assert os.stat(tmp_path / "leases").st_mode & 0o777 == 0o700
    assert os.stat(store.path_for("k/eth1")).st_mode & 0o777 == 0o600


def test_a_guest_process_exit_drops_its_entry_through_pidfd(tmp_path: Path) -> None:
    """A real child process stands in for the container's init; its netns is ours."""

    async def scenario() -> None:
        rig = Rig(tmp_path, watch=True)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            guest = GuestRef(
                kind="pid", key=str(child.pid), name="child", pid=child.pid,
                netns_path=f"/proc/{child.pid}/ns/net",
                netns_inode=os.stat(f"/proc/{child.pid}/ns/net").st_ino,
            )
            lease = make_lease(obtained_at=rig.clock.now(), lease_time=86400, t1=43200,
                               t2=75600)
            await rig.keeper.hold(guest, "eth1", lease, HoldOptions())
            assert len(rig.files()) == 1
            child.kill()
            gone = asyncio.Event()
            rig.keeper.on_change = lambda entry, event: gone.set() if event == "gone" else None
            await asyncio.wait_for(gone.wait(), 30)
        finally:
            child.kill()
            child.wait()
        assert rig.keeper.entries == {} and rig.files() == []
        await rig.keeper.close()

    run(scenario())
