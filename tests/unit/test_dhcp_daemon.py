"""The daemon's protocol, single-instance lock, file modes and plugin hooks, over its real unix
socket, with the lease keeper on a fake DHCP port (no network)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovsbridge.daemon.leases import LeaseKeeper, LeaseStore
from ovsbridge.daemon.server import Daemon, DaemonAlreadyRunning
from ovsbridge.errors import BadInput, NotFound
from ovsbridge.paths import DaemonPaths, daemon_paths
from ovsbridge.system import daemon_client

from .dhcp_fakes import FakeClock, FakeDhcp, make_guest, make_lease


@pytest.fixture
def where() -> Iterator[DaemonPaths]:
    base = tempfile.mkdtemp(prefix="obtd")  # short: unix socket paths are limited to 108 bytes
    try:
        yield DaemonPaths(os.path.join(base, "run"), os.path.join(base, "state"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_daemon(where: DaemonPaths, **kw) -> tuple[Daemon, FakeDhcp]:
    clock = FakeClock(max_jump=0)  # time stands still: nothing renews by itself
    clock.t = 2000.0
    dhcp = FakeDhcp(clock)
    keeper = LeaseKeeper(LeaseStore(where.leases_dir), dhcp, clock, watch=False)
    return Daemon(where, keeper=keeper, **kw), dhcp


async def started(daemon: Daemon) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(daemon.run())
    for _ in range(500):
        if task.done() or await asyncio.to_thread(daemon_client.ping, daemon.paths):
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    return task


async def ask(where: DaemonPaths, op: str, **fields):
    return await asyncio.to_thread(daemon_client.request, op, where=where, **fields)


def test_paths_come_from_the_environment() -> None:
    assert daemon_paths({}) == DaemonPaths("/run/ovsbridge", "/var/lib/ovsbridge")
    custom = daemon_paths({"OVSBRIDGE_RUN_DIR": "/tmp/r", "OVSBRIDGE_STATE_DIR": "/tmp/s"})
    assert custom.socket == "/tmp/r/daemon.sock" and custom.leases_dir == "/tmp/s/leases"


def test_hold_status_renew_drop_stop_over_the_socket(where: DaemonPaths) -> None:
    async def scenario() -> None:
        daemon, dhcp = make_daemon(where)
        task = await started(daemon)
        lease = make_lease(obtained_at=2000.0)
        guest = make_guest("abc123")

        assert stat.S_IMODE(os.stat(where.run_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(where.state_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(where.socket).st_mode) == 0o600
        assert Path(where.lock).read_text().strip() == str(os.getpid())

        held = await ask(where, "hold", guest=guest.to_dict(), ifname="eth1",
                         lease=lease.to_dict(), options={"default_route": False, "bridge": "b"})
        assert held["address"] == "203.0.113.10/24" and held["state"] == "bound"
        status = await ask(where, "status")
        assert status["pid"] == os.getpid()
        [item] = status["leases"]
        assert item["guest"]["key"] == "abc123" and item["ifname"] == "eth1"
        assert item["expires_at"] == lease.expires_at and item["renew_at"] == lease.renew_at
        assert len(os.listdir(where.leases_dir)) == 1

        assert (await ask(where, "renew", guest_key="abc123", ifname="eth1"))["renewing"]
        for _ in range(100):
            if ("renew", "eth1") in dhcp.calls:
                break
            await asyncio.sleep(0.01)
        assert ("renew", "eth1") in dhcp.calls

        dropped = await ask(where, "drop", guest_key="abc123", ifname="eth1", release=True)
        assert [d["ifname"] for d in dropped["dropped"]] == ["eth1"]
        assert dhcp.released and os.listdir(where.leases_dir) == []
        assert (await ask(where, "drop", guest_key="abc123", ifname=None))["dropped"] == []

        assert (await ask(where, "stop"))["stopping"]
        await asyncio.wait_for(task, 10)
        assert not os.path.exists(where.socket) and not os.path.exists(where.lock)

    asyncio.run(scenario())


def test_bad_requests_get_errors_and_the_connection_survives(where: DaemonPaths) -> None:
    async def scenario() -> None:
        daemon, _ = make_daemon(where)
        task = await started(daemon)
        with pytest.raises(BadInput, match="unknown daemon op"):
            await ask(where, "frobnicate")
        with pytest.raises(BadInput, match="guest"):
            await ask(where, "hold", ifname="eth1", lease={})
        with pytest.raises(BadInput, match="malformed"):
            await ask(where, "hold", guest=make_guest().to_dict(), ifname="eth1",
                      lease={"address": "x"})

        def raw_exchange() -> list[bytes]:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(where.socket)
                s.sendall(b"not json\n[1]\n" + b'{"op": "ping"}\n')
                data = b""
                while data.count(b"\n") < 3:
                    data += s.recv(4096)
                return data.splitlines()

        lines = await asyncio.to_thread(raw_exchange)
        assert [b'"ok": false' in line for line in lines] == [True, True, False]
        daemon.request_stop()
        await task

    asyncio.run(scenario())


def test_a_second_daemon_is_refused(where: DaemonPaths) -> None:
    async def scenario() -> None:
        first, _ = make_daemon(where)
        task = await started(first)
        second, _ = make_daemon(where)
        with pytest.raises(DaemonAlreadyRunning):
            await second.run()
        assert (await ask(where, "ping"))["pid"] == os.getpid()  # the first still serves
        first.request_stop()
        await task

    asyncio.run(scenario())


def test_a_socket_left_by_a_killed_daemon_is_replaced(where: DaemonPaths) -> None:
    async def scenario() -> None:
        os.makedirs(where.run_dir, mode=0o700)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(where.socket)  # bound, never listening: what SIGKILL leaves behind
        stale.close()
        with pytest.raises(daemon_client.DaemonNotRunning):
            await asyncio.to_thread(daemon_client.request, "status", where=where)
        daemon, _ = make_daemon(where)
        task = await started(daemon)
        assert (await ask(where, "ping"))["pid"] == os.getpid()
        daemon.request_stop()
        await task

    asyncio.run(scenario())


def test_persisted_leases_are_resumed_by_the_next_daemon(where: DaemonPaths) -> None:
    async def scenario() -> None:
        daemon, _ = make_daemon(where)
        task = await started(daemon)
        await ask(where, "hold", guest=make_guest("g1").to_dict(), ifname="eth1",
                  lease=make_lease(obtained_at=2000.0).to_dict(), options={})
        daemon.request_stop()
        await task
        assert len(os.listdir(where.leases_dir)) == 1  # stopping releases nothing

        again, dhcp = make_daemon(where)
        task = await started(again)
        [item] = (await ask(where, "status"))["leases"]
        assert item["guest"]["key"] == "g1"
        for _ in range(100):
            if ("reboot", "eth1") in dhcp.calls:
                break
            await asyncio.sleep(0.01)
        assert ("reboot", "eth1") in dhcp.calls  # INIT-REBOOT on resume
        again.request_stop()
        await task

    asyncio.run(scenario())


def test_plugins_add_tasks_ops_and_status_and_crashed_tasks_restart(where: DaemonPaths) -> None:
    runs: list[int] = []

    def plugin(daemon: Daemon) -> None:
        async def flaky(d: Daemon) -> None:
            runs.append(1)
            if len(runs) < 2:
                raise RuntimeError("first run fails")
            await asyncio.Event().wait()

        async def echo(request: dict) -> dict:
            return {"echo": request.get("text")}

        daemon.add_task("flaky", flaky)
        daemon.add_op("echo", echo)
        daemon.add_status("watcher", lambda: {"containers": 0})

    async def scenario() -> None:
        daemon, _ = make_daemon(where, plugins=[plugin])
        task = await started(daemon)
        assert (await ask(where, "echo", text="hi")) == {"echo": "hi"}
        assert (await ask(where, "status"))["watcher"] == {"containers": 0}
        for _ in range(300):
            if len(runs) >= 2:
                break
            await asyncio.sleep(0.01)
        assert len(runs) == 2
        with pytest.raises(BadInput):
            daemon.add_op("echo", plugin)  # type: ignore[arg-type]
        daemon.request_stop()
        await task

    asyncio.run(scenario())


def test_client_without_a_daemon(where: DaemonPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", where.run_dir)
    monkeypatch.setenv("OVSBRIDGE_STATE_DIR", where.state_dir)
    assert daemon_client.drop("nobody", "eth1") == []
    assert daemon_client.stop() is None
    assert daemon_client.ping() is None
    with pytest.raises(NotFound) as info:
        daemon_client.status()
    assert info.value.exit_code == 3 and where.socket in info.value.message
    assert not os.path.exists(where.run_dir)  # asking created nothing


def test_a_wiped_run_dir_stops_the_daemon(where: DaemonPaths, monkeypatch) -> None:
    """Someone removes the run dir under a live daemon: nobody could reach it any more and a
    second daemon could start, so it stops, and leaves the new files alone."""
    from ovsbridge.daemon import server as daemon_module

    monkeypatch.setattr(daemon_module, "GUARD_INTERVAL", 0.05)

    async def scenario() -> None:
        daemon, _ = make_daemon(where)
        task = await started(daemon)
        shutil.rmtree(where.run_dir)
        os.makedirs(where.run_dir, mode=0o700)
        Path(where.lock).write_text("someone else's\n")
        await asyncio.wait_for(task, 10)
        assert Path(where.lock).read_text() == "someone else's\n"

    asyncio.run(scenario())


def test_cli_status_renders_leases_and_exits_3_without_a_daemon(
    where: DaemonPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root, wherever the tests run
    from click.testing import CliRunner

    from ovsbridge.cli import main
    from ovsbridge.cli.daemon import render_status

    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", where.run_dir)
    monkeypatch.setenv("OVSBRIDGE_STATE_DIR", where.state_dir)
    result = CliRunner().invoke(main, ["daemon", "status"])
    assert result.exit_code == 3 and "no ovsbridge daemon is running" in result.output
    result = CliRunner().invoke(main, ["daemon", "status", "--json"])
    assert result.exit_code == 3 and '"exit_code": 3' in result.output

    text = render_status(
        {
            "pid": 42, "version": "0.1.0", "started_at": 1000.0,
            "leases": [
                {"guest": {"name": "web1", "key": "abc"}, "ifname": "eth1",
                 "address": "203.0.113.10/24", "state": "bound", "expires_at": 1120.0,
                 "renew_at": 1060.0, "next_action_at": 1060.0},
            ],
            "extra": {"containers": 2},
        },
        now=1010.0,
    )
    lines = text.splitlines()
    assert lines[0].startswith("ovsbridge daemon 0.1.0, pid 42, up 10s, 1 lease(s)")
    assert lines[1].split() == ["GUEST", "IFNAME", "ADDRESS", "STATE", "EXPIRES", "NEXT",
                                "RENEWAL"]
    assert "web1" in lines[2] and "203.0.113.10/24" in lines[2] and "(in 50s)" in lines[2]
    assert lines[-1] == 'extra: {"containers": 2}'


def test_the_docker_endpoint_a_daemon_serves_leaves_the_default_spelt_out(monkeypatch):
    from ovsbridge.client import docker_endpoint

    for key in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(key, raising=False)
    assert docker_endpoint() == {}
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert docker_endpoint() == {}
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/other.sock")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "")
    assert docker_endpoint() == {"DOCKER_HOST": "unix:///tmp/other.sock"}
