"""Per guest-interface locks (system/locks.py) on real files and real flock, no lab.

A holder that ends removes its file; one that is killed leaves it (with its note, if it
was building); a removed file never lets two holders in; cleanup's sweep removes only idle
files without a note.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from ovsbridge.system import locks

KEY = "c" * 64


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "locks"
    monkeypatch.setenv(locks.LOCK_DIR_ENV, str(path))
    return path


def test_a_holder_that_ends_removes_its_file(lock_dir) -> None:
    with locks.guest_lock(KEY, "eth1"):
        assert os.path.exists(locks.lock_path(KEY, "eth1"))
        assert not locks.is_free(KEY, "eth1")
    assert os.listdir(lock_dir) == []
    assert locks.is_free(KEY, "eth1")


def test_a_killed_holder_leaves_its_note_and_an_ended_one_does_not(lock_dir) -> None:
    fd = locks.try_hold(KEY, "eth1")
    assert fd is not None
    locks.note_building(KEY, "eth1", "ovbkilled")
    os.close(fd)  # killed: the kernel drops the lock, nothing else runs
    assert locks.building_notes() == {"ovbkilled": (KEY, "eth1")}
    with locks.guest_lock(KEY, "eth2"):
        locks.note_building(KEY, "eth2", "ovbdone")
        locks.note_building(KEY, "eth2", None)  # tagged: cleared
    assert locks.building_notes() == {"ovbkilled": (KEY, "eth1")}


def test_a_note_counts_only_in_the_file_of_the_interface_it_names(lock_dir) -> None:
    fd = locks.try_hold(KEY, "eth1")
    assert fd is not None
    with open(locks.lock_path(KEY, "eth1"), "w") as f:
        f.write(f"building ovbforged {KEY} eth9 {locks._netns()}\n")  # another ifname
    os.close(fd)
    assert locks.building_notes() == {}


def test_the_sweep_removes_idle_files_without_a_note_only(lock_dir) -> None:
    for ifname, note in (("eth1", None), ("eth2", "ovbkilled")):
        fd = locks.try_hold(KEY, ifname)
        assert fd is not None
        if note:
            locks.note_building(KEY, ifname, note)
        os.close(fd)
    held = locks.try_hold(KEY, "eth3")  # somebody is working on eth3
    try:
        assert locks.sweep_idle() == 1
        remaining = set(os.listdir(lock_dir))
        assert remaining == {os.path.basename(locks.lock_path(KEY, i)) for i in ("eth2", "eth3")}
    finally:
        assert held is not None
        os.close(held)


def test_a_removed_file_never_lets_two_holders_in(lock_dir) -> None:
    # A holds; B waits on the same file; A ends (removes the file, then lets go). B must
    # notice it locked a removed file, take the new one, and be the only holder.
    inside = []
    a_in, a_go = threading.Event(), threading.Event()

    def holder(name: str, first: bool) -> None:
        with locks.guest_lock(KEY, "eth1", timeout=10):
            inside.append(name)
            if first:
                a_in.set()
                a_go.wait(5)
            else:
                assert locks.try_hold(KEY, "eth1") is None  # nobody else gets in
            inside.remove(name)

    a = threading.Thread(target=holder, args=("a", True))
    a.start()
    a_in.wait(5)
    b = threading.Thread(target=holder, args=("b", False))
    b.start()
    time.sleep(0.1)  # b is waiting on a's file now
    a_go.set()
    a.join(5)
    b.join(5)
    assert inside == [] and os.listdir(lock_dir) == []


def test_a_lock_held_too_long_is_a_conflict(lock_dir) -> None:
    fd = locks.try_hold(KEY, "eth1")
    assert fd is not None
    try:
        with pytest.raises(locks.Conflict), locks.guest_lock(KEY, "eth1", timeout=0.05):
            pass
    finally:
        os.close(fd)


def test_a_note_is_kept_while_its_link_exists_and_only_judged_in_its_own_netns(
        lock_dir) -> None:
    def leave(ifname: str, text: str) -> None:
        fd = locks.try_hold(KEY, ifname)
        assert fd is not None
        with open(locks.lock_path(KEY, ifname), "w") as f:
            f.write(text)
        os.close(fd)

    here = locks._netns()
    leave("eth1", f"building ovbgone {KEY} eth1 {here}\n")
    leave("eth2", f"building ovbthere {KEY} eth2 {here}\n")
    leave("eth3", f"building ovbelsewhere {KEY} eth3 {here + 1}\n")  # a simulated host's
    leave("eth4", "garbage\n")
    assert locks.building_notes() == {"ovbgone": (KEY, "eth1"), "ovbthere": (KEY, "eth2")}
    assert locks.sweep_idle(links={"ovbthere", "lo"}) == 2  # eth1's and eth4's
    assert locks.building_notes() == {"ovbthere": (KEY, "eth2")}
    assert sorted(os.listdir(lock_dir)) == sorted(
        os.path.basename(locks.lock_path(KEY, i)) for i in ("eth2", "eth3"))
