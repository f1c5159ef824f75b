"""The Docker watcher against a fake event stream and fake actions (no Docker, no OVS)."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ovsbridge.daemon import watcher as w
from ovsbridge.errors import BadInput, OperationFailed
from ovsbridge.naming import pipework_mac
from ovsbridge.request import AttachRequest
from ovsbridge.system.docker_events import ContainerEvent, DockerGone, RunningContainer

CID = "c" * 64
CID2 = "d" * 64
GOOD = {"ovsbridge.bridge": "br0", "ovsbridge.address": "dhcp"}
GONE = object()


class FakeDocker:
    """Docker whose events the test pushes; ``down`` makes connect fail."""

    where = "unix:///fake/docker.sock"

    def __init__(self) -> None:
        self.down = False
        self.connects = 0
        self.containers: list[RunningContainer] = []
        self._queue: queue.Queue[Any] = queue.Queue()

    def connect(self) -> None:
        self.connects += 1
        if self.down:
            raise DockerGone(f"cannot reach Docker at {self.where}: refused")
        self._queue = queue.Queue()

    def running(self) -> list[RunningContainer]:
        return list(self.containers)

    def events(self) -> Iterator[ContainerEvent]:
        q = self._queue

        def gen() -> Iterator[ContainerEvent]:
            while True:
                item = q.get()
                if item is GONE:
                    raise DockerGone("the event stream ended")
                yield item

        return gen()

    def close(self) -> None:
        self._queue.put(GONE)

    def push(self, action: str, cid: str = CID, name: str = "web1",
             labels: dict[str, str] | None = None) -> None:
        self._queue.put(ContainerEvent(action, cid, name, dict(labels or {}), time.time()))

    def drop_connection(self) -> None:
        self._queue.put(GONE)


class FakeActions:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.attach_error: Exception | None = None
        self.slow_forget = 0.0
        self.lock = threading.Lock()

    def attach(self, request: AttachRequest) -> Any:
        with self.lock:
            self.log.append(("attach", request))
        if self.attach_error is not None:
            raise self.attach_error

        class Result:
            status, port, mac, addresses = "attached", "ovb123", "02:00:00:00:00:01", ()

        return Result()

    def forget(self, container_id: str, name: str, bridges: Any) -> list[str]:
        time.sleep(self.slow_forget)
        with self.lock:
            self.log.append(("forget", container_id))
        return ["ovb123"]

    def sweep(self, bridges: Any) -> list[str]:
        with self.lock:
            self.log.append(("sweep", bridges))
        return []

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _ in self.log]


def drive(docker: FakeDocker, actions: FakeActions,
          script: Callable[[w.Watcher], Any], **kwargs: Any) -> w.Watcher:
    """Run a watcher, let SCRIPT (a coroutine function) poke it, then stop it."""
    watcher = w.Watcher(docker, actions, backoff=(0.01, 0.02), **kwargs)

    async def main() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.wait_for(script(watcher), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            docker.close()

    asyncio.run(main())
    return watcher


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def settled(watcher: w.Watcher) -> None:
    await asyncio.sleep(0.05)
    await watcher.idle.wait()


# ----- labels -------------------------------------------------------------------------------
def test_labels_to_request() -> None:
    req = w.request_from_labels(CID, {
        "ovsbridge.bridge": "ovsbr0", "ovsbridge.address": "198.51.100.5/24@198.51.100.1,"
        "2001:db8::5/64", "ovsbridge.ifname": "lan0", "ovsbridge.vlan": "20",
        "ovsbridge.mac": "02:42:c6:33:64:12", "ovsbridge.mtu": "1400"})
    assert (req.bridge, req.ifname, req.vlan, req.mac, req.mtu) == (
        "ovsbr0", "lan0", 20, "02:42:c6:33:64:12", 1400)
    assert req.plan.mode == "static" and len(req.plan.statics) == 2
    assert req.guest.kind == "docker" and req.guest.ref == CID
    assert not req.replace
    dhcp = w.request_from_labels(CID, GOOD)
    assert dhcp.plan.mode == "dhcp" and dhcp.ifname == "eth1" and dhcp.mac is None
    assert w.request_from_labels(CID, {**GOOD, "ovsbridge.mac": "U:web1"}).mac == \
        pipework_mac("web1")


@pytest.mark.parametrize(("labels", "words"), [
    ({"ovsbridge.address": "dhcp"}, "ovsbridge.bridge is missing"),
    ({"ovsbridge.bridge": "br0"}, "ovsbridge.address is missing"),
    ({**GOOD, "ovsbridge.vlan": "0"}, "ovsbridge.vlan='0': VLAN 0 is out of range"),
    ({**GOOD, "ovsbridge.vlan": "4095"}, "VLAN 4095 is out of range"),
    ({**GOOD, "ovsbridge.vlan": "ten"}, "ovsbridge.vlan='ten'"),
    ({**GOOD, "ovsbridge.mtu": "20"}, "MTU 20 is out of range"),
    ({**GOOD, "ovsbridge.mac": "01:00:5e:00:00:01"}, "multicast"),
    ({**GOOD, "ovsbridge.mac": "nope"}, "malformed"),
    ({**GOOD, "ovsbridge.ifname": "a-very-long-ifname"}, "ovsbridge.ifname"),
    ({**GOOD, "ovsbridge.address": "198.51.100.5"}, "no prefix length"),
    ({**GOOD, "ovsbridge.address": "198.51.100.5/24@2001:db8::1"}, "IPv6"),
    ({**GOOD, "ovsbridge.bridge": "bad/name"}, "ovsbridge.bridge"),
    ({**GOOD, "ovsbridge.vlna": "5"}, "unknown label ovsbridge.vlna"),
])
def test_bad_labels_name_the_label(labels: dict[str, str], words: str) -> None:
    with pytest.raises(BadInput) as info:
        w.request_from_labels(CID, labels)
    assert words in info.value.message


def test_watch_settings() -> None:
    assert w.watch_settings({}) == (True, None)  # the host-wide daemon watches
    assert w.watch_settings({"OVSBRIDGE_WATCH": "off"}) == (False, None)
    assert w.watch_settings({"OVSBRIDGE_WATCH_BRIDGES": "a, b,"}) == (True,
                                                                      frozenset({"a", "b"}))
    private = {"OVSBRIDGE_RUN_DIR": "/tmp/x/run"}
    assert w.watch_settings(private) == (False, None)  # a private daemon does not, unless on
    assert w.watch_settings({**private, "OVSBRIDGE_WATCH": "on"}) == (True, None)


def test_plugin_respects_off(monkeypatch: pytest.MonkeyPatch) -> None:
    added: list[str] = []

    class FakeDaemon:
        def add_task(self, name: str, factory: Any) -> None:
            added.append(name)

        def add_status(self, name: str, provider: Any) -> None:
            added.append(name)

    monkeypatch.setenv("OVSBRIDGE_WATCH", "off")
    w.plugin(FakeDaemon())
    monkeypatch.delenv("OVSBRIDGE_WATCH")
    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", "/tmp/private/run")
    w.plugin(FakeDaemon())
    assert added == []
    monkeypatch.setenv("OVSBRIDGE_WATCH", "on")
    w.plugin(FakeDaemon())
    assert added == ["docker-watcher", "watcher"]


# ----- events -------------------------------------------------------------------------------
def test_reconcile_on_connect_attaches_running_labelled_containers_and_sweeps() -> None:
    docker, actions = FakeDocker(), FakeActions()
    docker.containers = [RunningContainer(CID, "web1", GOOD)]

    async def script(watcher: w.Watcher) -> None:
        await until(lambda: watcher.last_reconcile is not None)

    watcher = drive(docker, actions, script)
    assert sorted(actions.kinds()) == ["attach", "sweep"]
    assert watcher.last_reconcile is not None and watcher.last_reconcile["attached"] == 1
    status = watcher.status()
    assert status["docker"]["connected"] is False or status["docker"]["connections"] == 1
    assert status["containers"][0]["state"] == "attached"
    assert status["containers"][0]["port"] == "ovb123"


def test_start_attaches_and_die_forgets_in_order() -> None:
    docker, actions = FakeDocker(), FakeActions()
    actions.slow_forget = 0.2  # a slow removal must still finish before the restart's attach

    async def script(watcher: w.Watcher) -> None:
        await until(lambda: watcher.last_reconcile is not None)
        docker.push("start", labels=GOOD)
        docker.push("die", labels=GOOD)
        docker.push("start", labels=GOOD)
        docker.push("start", cid=CID2, name="plain")  # no labels: ignored
        await until(lambda: actions.kinds().count("attach") == 2)
        await settled(watcher)

    watcher = drive(docker, actions, script)
    assert actions.kinds() == ["sweep", "attach", "forget", "attach"]
    assert watcher.events_seen == 4
    assert [c["name"] for c in watcher.status()["containers"]] == ["web1"]


def test_bad_labels_log_one_line_and_the_watcher_goes_on(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    docker, actions = FakeDocker(), FakeActions()
    bad = {**GOOD, "ovsbridge.vlan": "9999"}

    async def script(watcher: w.Watcher) -> None:
        await until(lambda: watcher.last_reconcile is not None)
        docker.push("start", labels=bad)
        docker.push("start", labels=bad)
        docker.push("start", cid=CID2, name="good", labels=GOOD)
        await until(lambda: "attach" in actions.kinds())
        await settled(watcher)

    with caplog.at_level(logging.WARNING, logger="ovsbridge"):
        watcher = drive(docker, actions, script)
    lines = [r.getMessage() for r in caplog.records if "left unattached" in r.getMessage()]
    assert len(lines) == 1
    assert 'container "web1"' in lines[0] and "VLAN 9999 is out of range" in lines[0]
    assert [r.guest.ref for k, r in actions.log if k == "attach"] == [CID2]
    states = {c["name"]: c["state"] for c in watcher.status()["containers"]}
    assert states == {"web1": "bad labels", "good": "attached"}


def test_a_failing_attach_is_logged_and_the_watcher_goes_on(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    docker, actions = FakeDocker(), FakeActions()
    actions.attach_error = OperationFailed("no DHCP lease within 30 s")

    async def script(watcher: w.Watcher) -> None:
        await until(lambda: watcher.last_reconcile is not None)
        docker.push("start", labels=GOOD)
        await until(lambda: "attach" in actions.kinds())
        await settled(watcher)
        docker.push("die")
        await until(lambda: "forget" in actions.kinds())

    with caplog.at_level(logging.WARNING, logger="ovsbridge"):
        watcher = drive(docker, actions, script)
    assert any("not attached to br0: no DHCP lease" in r.getMessage() for r in caplog.records)
    assert watcher.status()["containers"][0]["error"] == "no DHCP lease within 30 s"


def test_lost_docker_reconnects_with_backoff_and_reconciles_again() -> None:
    docker, actions = FakeDocker(), FakeActions()

    async def script(watcher: w.Watcher) -> None:
        await until(lambda: watcher.connections == 1 and watcher.last_reconcile is not None)
        docker.down = True
        docker.drop_connection()
        await until(lambda: docker.connects >= 4)  # refused a few times, still alive
        assert watcher.status()["docker"]["connected"] is False
        assert "refused" in (watcher.status()["docker"]["last_error"] or "")
        docker.down = False
        await until(lambda: watcher.connections == 2)
        await until(lambda: actions.kinds().count("sweep") == 2)
        docker.push("die")
        await until(lambda: "forget" in actions.kinds())

    watcher = drive(docker, actions, script)
    assert watcher.connections == 2


def test_unwatched_bridges_are_left_alone() -> None:
    docker, actions = FakeDocker(), FakeActions()
    docker.containers = [RunningContainer(CID, "web1", GOOD)]

    async def script(watcher: w.Watcher) -> None:
        await until(lambda: watcher.last_reconcile is not None)

    watcher = drive(docker, actions, script, bridges=frozenset({"other"}))
    assert actions.kinds() == ["sweep"]
    assert actions.log[0][1] == frozenset({"other"})
    assert watcher.status()["containers"][0]["state"] == "ignored"
    assert watcher.status()["bridges"] == ["other"]


def test_render_watcher_status() -> None:
    from ovsbridge.cli.cleanup import render_watcher_status

    watcher = w.Watcher(FakeDocker(), FakeActions(), bridges=frozenset({"br0"}))
    watcher.watched[CID] = w.Watched(CID, "web1", "attached", "br0", "eth1", "dhcp", "ovb1",
                                     "02:00:00:00:00:01")
    watcher.watched[CID2] = w.Watched(CID2, "bad", "bad labels", error="label ovsbridge.vlan")
    watcher.last_error, watcher.next_retry_at = "cannot reach Docker", time.time() + 5
    text = render_watcher_status(watcher.status())
    head, header, *rows = text.splitlines()
    assert head.startswith("watcher: NOT connected to unix:///fake/docker.sock")
    assert "cannot reach Docker" in head and "bridges: br0" in head
    assert header.split()[:3] == ["CONTAINER", "ID", "STATE"]
    assert rows[0].split()[:2] == ["bad", CID2[:12]]
    assert "02:00:00:00:00:01" in rows[1]


def test_cleanup_cli_refuses_a_bad_bridge_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root, wherever the tests run
    from click.testing import CliRunner

    from ovsbridge.cli import main

    result = CliRunner().invoke(main, ["cleanup", "--bridge", "bad/name"])
    assert result.exit_code == 2
    assert "bridge name" in result.output
