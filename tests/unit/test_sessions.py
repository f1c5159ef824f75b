"""Netlink sessions and the bulk worker threads of attach (no kernel objects: fake kits)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ovsbridge.ops import attach as attach_ops
from ovsbridge.system import netns


class FakeKit:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[FakeKit]:
    made: list[FakeKit] = []

    def fake_open(path: str | None) -> FakeKit:
        made.append(FakeKit(path))
        return made[-1]

    monkeypatch.setattr(netns, "_open", fake_open)
    return made


def test_a_nested_session_closes_the_guest_kits_it_opened_and_keeps_the_hosts(
        opened: list[FakeKit]) -> None:
    with netns.session():
        host = netns._kit(None)
        for guest in ("/proc/1/ns/net", "/proc/2/ns/net"):
            with netns.session():
                assert netns._kit(None) is host  # the outer session's, made once
                kit = netns._kit(guest)
                assert kit is netns._kit(guest)  # reused inside the block
            assert kit is not None and kit.closed
        assert host is not None and not host.closed
    assert host.closed
    assert [k.path for k in opened] == [None, "/proc/1/ns/net", "/proc/2/ns/net"]


def test_a_nested_session_keeps_what_the_outer_one_had_opened(opened: list[FakeKit]) -> None:
    with netns.session():
        guest = netns._kit("/proc/1/ns/net")
        with netns.session():
            assert netns._kit("/proc/1/ns/net") is guest
        assert guest is not None and not guest.closed


class Work:
    def __init__(self, index: int) -> None:
        self.index = index


def test_each_gives_every_work_to_one_thread_that_holds_a_session() -> None:
    seen: dict[int, tuple[str, bool]] = {}
    lock = threading.Lock()
    inside = threading.local()

    class Session:
        def __enter__(self) -> None:
            inside.on = True

        def __exit__(self, *exc: Any) -> None:
            inside.on = False

    def func(work: Any) -> None:
        with lock:
            assert work.index not in seen
            seen[work.index] = (threading.current_thread().name, getattr(inside, "on", False))

    works: list[Any] = [Work(i) for i in range(40)]
    attach_ops._each(func, works, 3, Session)
    assert sorted(seen) == list(range(40))
    assert all(on for _, on in seen.values())
    assert len({name for name, _ in seen.values()}) <= 3


def test_each_reraises_what_escaped_a_worker() -> None:
    def func(work: Any) -> None:
        if work.index == 5:
            raise RuntimeError("a bug")

    works: list[Any] = [Work(i) for i in range(10)]
    with pytest.raises(RuntimeError, match="a bug"):
        attach_ops._each(func, works, 2, lambda: netns.session())
