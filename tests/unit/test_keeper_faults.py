"""The lease keeper survives its own faults (issue 9, behaviours 5 and 6): a state that cannot
be saved, a task that fails, malformed state files. Fakes for DHCP and the clock; the final
state is checked (what status says, what is configured, what is on disk)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from ovsbridge.daemon.leases import TASK_BACKOFF, HoldOptions, LeaseStore

from .dhcp_fakes import make_guest, make_lease
from .test_dhcp_keeper import Rig, run


class FlakyStore(LeaseStore):
    """A LeaseStore whose saves fail with EROFS while ``read_only`` is set."""

    read_only = False

    def save(self, key: str, record: dict[str, Any]) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), self.path_for(key))
        super().save(key, record)


def flaky_rig(tmp_path: Path) -> tuple[Rig, FlakyStore]:
    rig = Rig(tmp_path)
    store = FlakyStore(rig.store.directory)
    rig.store = store
    rig.keeper = rig.new_keeper()
    return rig, store


def test_a_state_that_cannot_be_saved_is_shown_as_error_and_the_lease_is_still_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        rig, store = flaky_rig(tmp_path)
        lease = make_lease(obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        store.read_only = True
        rig.clock.max_jump = 1000
        rig.keeper.kick("c0ffee", "eth1")
        await rig.until(lambda: "renewed" in rig.events)
        await rig.until(lambda: rig.keeper.status()[0]["state"] == "error")
        [item] = rig.keeper.status()
        assert item["dhcp_state"] == "bound" and "Read-only file system" in item["error"]
        assert item["next_action_at"] >= rig.clock.now()  # never a renewal in the past
        # the lease is renewed again at its T1 although nothing can be saved
        renewals = item["renewals"]
        rig.clock.max_jump = None
        await rig.until(lambda: rig.keeper.status()[0]["renewals"] > renewals + 1)
        assert rig.dhcp.configured["eth1"].obtained_at > lease.obtained_at
        assert rig.keeper.status()[0]["state"] == "error"
        # the state dir is writable again: saved at the next retry, "bound" again
        store.read_only = False
        await rig.until(lambda: rig.keeper.status()[0]["state"] == "bound")
        [record] = rig.files()
        assert record["lease"]["obtained_at"] == rig.keeper.entries["c0ffee/eth1"].lease.obtained_at
        assert rig.keeper.status()[0]["error"] is None
        await rig.keeper.close()

    with caplog.at_level(logging.INFO, logger="ovsbridge.daemon.leases"):
        run(scenario())
    errors = [r for r in caplog.records if "cannot save the lease state" in r.getMessage()]
    assert len(errors) == 1  # one line per fault, not one per retry
    assert any("saved again" in r.getMessage() for r in caplog.records)


def test_hold_with_a_read_only_state_dir_keeps_the_lease_and_says_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig, store = flaky_rig(tmp_path)
        store.read_only = True
        rig.clock.max_jump = 1000
        entry = await rig.keeper.hold(make_guest(), "eth1",
                                      make_lease(obtained_at=rig.clock.now()), HoldOptions())
        assert entry.status()["state"] == "error" and entry.status()["dhcp_state"] == "bound"
        await rig.keeper.close()

    run(scenario())


def test_a_failing_task_is_restarted_with_backoff_and_shown_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        failures = {"left": 3}
        real_apply = rig.dhcp.apply
        seen: list[dict[str, Any]] = []

        async def apply(guest, ifname, lease, *, default_route, previous):  # type: ignore[no-untyped-def]
            if failures["left"]:
                failures["left"] -= 1
                seen.append(rig.keeper.status()[0])
                raise RuntimeError("netlink said no")
            await real_apply(guest, ifname, lease, default_route=default_route,
                             previous=previous)

        rig.dhcp.apply = apply  # type: ignore[method-assign]
        lease = make_lease(obtained_at=rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", lease, HoldOptions())
        await rig.until(lambda: "renewed" in rig.events)
        [item] = rig.keeper.status()
        assert item["restarts"] == 3 and item["state"] == "bound" and item["error"] is None
        # while it waited for a restart, status said so
        assert seen[1]["state"] == "error" and "netlink said no" in seen[1]["error"]
        await rig.keeper.close()

    with caplog.at_level(logging.ERROR, logger="ovsbridge.daemon.leases"):
        run(scenario())
    assert sum("restarting it" in r.getMessage() for r in caplog.records) == 3
    assert TASK_BACKOFF[0] < TASK_BACKOFF[1] < TASK_BACKOFF[2]


def _valid_record(key: str = "c0ffee") -> dict[str, Any]:
    return {
        "version": 1,
        "guest": make_guest(key).to_dict(),
        "ifname": "eth1",
        "lease": make_lease().to_dict(),
        "options": HoldOptions().to_dict(),
        "state": "bound",
    }


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


MALFORMED: dict[str, Any] = {
    "list": [],
    "number": 5,
    "string": "x",
    "guest-number": {**_valid_record(), "guest": 5},
    "guest-wrong-kind": {**_valid_record(), "guest": {**make_guest().to_dict(), "kind": 3}},
    "inode-string": {**_valid_record(), "guest": {**make_guest().to_dict(), "netns_inode": "x"}},
    "lease-list": {**_valid_record(), "lease": ["203.0.113.10/24"]},
    "lease-time-string": {**_valid_record(),
                          "lease": {**make_lease().to_dict(), "lease_time": "120"}},
    "options-list": {**_valid_record(), "options": [1, 2]},
    "ifname-dash": {**_valid_record(), "ifname": "-rf"},
    "ifname-number": {**_valid_record(), "ifname": 1},
    "state-unknown": {**_valid_record(), "state": {"a": 1}},
    "no-lease": {k: v for k, v in _valid_record().items() if k != "lease"},
}


def test_malformed_state_files_are_moved_aside_and_the_rest_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LeaseStore(str(tmp_path / "leases"))
    store.ensure()
    good = _valid_record()
    store.save("c0ffee/eth1", good)
    directory = Path(store.directory)
    for name, record in MALFORMED.items():
        (directory / f"{name}.json").write_text(json.dumps(record))
    (directory / "deep.json").write_text(_deep(100_000))
    (directory / "garbage.json").write_bytes(b"\xff\xfe\x00garbage{{{")
    (directory / "huge.json").write_text('{"a": "' + "x" * (2 << 20) + '"}')
    bad_names = [*MALFORMED, "deep", "garbage", "huge"]

    async def scenario() -> int:
        rig = Rig(tmp_path)
        rig.clock.max_jump = 1000
        count = await rig.keeper.resume()
        await rig.until(lambda: "resumed" in rig.events or "rebooted" in rig.events)
        await rig.keeper.close()
        return count

    with caplog.at_level(logging.ERROR, logger="ovsbridge.daemon.leases"):
        assert run(scenario()) == 1
    left = sorted(p.name for p in directory.iterdir())
    assert left == sorted([os.path.basename(store.path_for("c0ffee/eth1"))]
                          + [f"{n}.json.bad" for n in bad_names])
    lines = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
    assert len(lines) == len(bad_names)
    assert all("\n" not in line and len(line) < 1000 for line in lines)


def test_a_record_under_the_wrong_file_name_is_moved_aside(tmp_path: Path) -> None:
    store = LeaseStore(str(tmp_path / "leases"))
    store.ensure()
    (Path(store.directory) / "copy.json").write_text(json.dumps(_valid_record()))

    async def scenario() -> int:
        rig = Rig(tmp_path)
        count = await rig.keeper.resume()
        await rig.keeper.close()
        return count

    assert asyncio.run(scenario()) == 0
    assert (Path(store.directory) / "copy.json.bad").exists()
