"""The real daemon survives its own faults (issue 9, behaviours 5, 6 and 9): a state dir that
became read-only, malformed lease state files, unsafe run and state directories.

dnsmasq in its own netns on an OVS bridge, --net=none containers whose eth1 the test makes
(as tests/integration/test_daemon.py does), a private daemon home per test (``home``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab.shell import run
from lab.snapshots import ovs_ports, root_links
from test_daemon import addresses, attach_dhcp, container_eth1, wait_for
from test_daemon import lan as lan  # the fixture

from ovsbridge import naming
from ovsbridge.daemon.leases import SAVE_RETRY
from ovsbridge.errors import EnvironmentProblem
from ovsbridge.paths import DaemonPaths
from ovsbridge.system import daemon_client

pytestmark = pytest.mark.lab


@contextlib.contextmanager
def immutable(path: str) -> Iterator[None]:
    """PATH made immutable (chattr +i): not even root can create, rename or remove in it,
    which is what a read-only state dir means to the daemon."""
    run(["chattr", "+i", path])
    try:
        yield
    finally:
        run(["chattr", "-i", path])


def lease_item(home) -> dict:
    [item] = home.leases()
    return item


def test_a_read_only_state_dir_is_shown_as_error_and_the_lease_is_kept(
    lan, make_container, _lab, home, ovsbridge
) -> None:
    """Behaviour 5: the task crashed, status said "bound" with a renewal in the past."""
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = attach_dhcp(container, mac, "ro1")
    [state_file] = home.state_files()
    before = json.loads(Path(home.paths.leases_dir, state_file).read_text())

    with immutable(home.paths.leases_dir):
        assert daemon_client.renew(container.id, "eth1")
        wait_for(lambda: lease_item(home)["state"] == "error", 30, "state error")
        item = lease_item(home)
        assert item["dhcp_state"] == "bound", item
        assert "cannot save the lease state" in item["error"], item
        assert "Operation not permitted" in item["error"], item
        assert item["next_action_at"] >= time.time() - 1, item  # not a renewal in the past
        assert item["renewals"] >= 1
        assert addresses(container.netns_path) == [lease.address.with_prefixlen]
        text = ovsbridge("daemon", "status")
        assert text.returncode == 0 and "error" in text.stdout, text
        assert "cannot save the lease state" in text.stdout, text.stdout
        # a second renewal while it still cannot save: still kept, still "error", one log line
        assert daemon_client.renew(container.id, "eth1")
        wait_for(lambda: lease_item(home)["renewals"] >= 2, 30, "a second renewal")
        assert lease_item(home)["state"] == "error"
    assert home.log().count("cannot save the lease state") == 1, home.log()

    # writable again: saved at the next retry, "bound" again, the file holds the new lease
    wait_for(lambda: lease_item(home)["state"] == "bound", SAVE_RETRY + 20, "bound again")
    assert lease_item(home)["error"] is None
    after = json.loads(Path(home.paths.leases_dir, state_file).read_text())
    assert after["lease"]["obtained_at"] > before["lease"]["obtained_at"]
    assert "lease state saved again" in home.log()


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_malformed_state_files_are_moved_aside_and_the_daemon_serves(
    lan, make_container, _lab, home
) -> None:
    """Behaviour 6: one malformed lease file stopped the daemon at start."""
    leases = Path(home.paths.leases_dir)
    leases.mkdir(parents=True, mode=0o700)
    os.chmod(home.paths.state_dir, 0o700)
    guest = {"kind": "docker", "key": "c0ffee", "name": "x", "pid": 1,
             "netns_path": "/proc/1/ns/net", "netns_inode": 1}
    bad = {
        "list.json": "[]",
        "types.json": json.dumps({"version": 1, "guest": 5, "ifname": "eth1", "lease": {}}),
        "lease.json": json.dumps({"version": 1, "guest": guest, "ifname": "eth1",
                                  "lease": {"address": ["x"], "lease_time": "120"}}),
        "options.json": json.dumps({"version": 1, "guest": guest, "ifname": "eth1",
                                    "lease": {}, "options": [1]}),
        "deep.json": _deep(200_000),
        "garbage.json": "\x00\x01garbage{{{",
    }
    for name, text in bad.items():
        (leases / name).write_text(text)
    (leases / "binary.json").write_bytes(b"\xff\xfe\xfd")
    names = [*bad, "binary.json"]

    pid = daemon_client.ensure_running(home.paths)
    assert home.pid() == pid
    assert sorted(home.state_files()) == sorted(f"{n}.bad" for n in names)
    log = home.log()
    for name in names:
        assert sum(f"{name} moved aside" in line for line in log.splitlines()) == 1, log
    assert "Traceback" not in log and "internal error" not in log

    # and it still does its job
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    attach_dhcp(container, mac, "bad1")
    assert lease_item(home)["state"] == "bound"
    for name in names:
        os.unlink(leases / f"{name}.bad")


# -- directories -------------------------------------------------------------------------------


def daemon_run(paths: DaemonPaths, timeout: float = 20) -> tuple[int, str]:
    """``ovsbridge daemon run`` with PATHS: (exit code, stderr). A daemon that serves instead
    of refusing is stopped by its PID and the test fails."""
    env = {**os.environ, "OVSBRIDGE_RUN_DIR": paths.run_dir,
           "OVSBRIDGE_STATE_DIR": paths.state_dir}
    proc = subprocess.Popen([sys.executable, "-m", "ovsbridge", "daemon", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        raise AssertionError(f"the daemon served {paths} instead of refusing it") from None
    return proc.returncode, stderr


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="obtd"))
    try:
        yield path
    finally:
        for sub in sorted(path.rglob("*"), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir() if sub.is_dir() and not sub.is_symlink() else sub.unlink()
        path.rmdir()


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o770, 0o720])
@pytest.mark.parametrize("which", ["run", "state"])
def test_an_unsafe_existing_directory_is_refused_and_its_mode_left_alone(
    base: Path, mode: int, which: str
) -> None:
    """Behaviour 9: the daemon chmodded an existing world-writable dir to 0700."""
    paths = DaemonPaths(str(base / "run"), str(base / "state"))
    target = base / which
    target.mkdir()
    os.chmod(target, mode)
    code, stderr = daemon_run(paths)
    lines = [line for line in stderr.splitlines() if line.startswith("error")]
    assert code == 5 and len(lines) == 1, stderr
    assert lines[0].startswith("error: refusing the ") and str(target) in lines[0], lines
    assert f"{mode:04o}" in lines[0] and "hint: " in lines[0], lines
    assert os.stat(target).st_mode & 0o7777 == mode  # untouched
    assert os.listdir(target) == []  # no socket, lock or log made in it


def test_a_directory_owned_by_someone_else_is_refused(base: Path) -> None:
    paths = DaemonPaths(str(base / "run"), str(base / "state"))
    (base / "run").mkdir(mode=0o700)
    os.chown(base / "run", 65534, 65534)
    code, stderr = daemon_run(paths)
    assert code == 5 and "belongs to uid 65534" in stderr, stderr
    assert os.stat(base / "run").st_uid == 65534 and os.stat(base / "run").st_mode & 0o777 == 0o700


def test_the_client_refuses_an_unsafe_run_dir_before_starting_a_daemon(base: Path) -> None:
    paths = DaemonPaths(str(base / "run"), str(base / "state"))
    (base / "run").mkdir()
    os.chmod(base / "run", 0o777)
    with pytest.raises(EnvironmentProblem, match="everyone can write it"):
        daemon_client.ensure_running(paths)
    assert os.listdir(base / "run") == [] and os.stat(base / "run").st_mode & 0o777 == 0o777


def test_a_safe_existing_directory_is_used_as_it_is(base: Path) -> None:
    paths = DaemonPaths(str(base / "run"), str(base / "state"))
    for sub in ("run", "state"):
        (base / sub).mkdir()
        os.chmod(base / sub, 0o755)
    pid = daemon_client.ensure_running(paths)
    try:
        assert daemon_client.ping(paths)["pid"] == pid
        assert os.stat(base / "run").st_mode & 0o777 == 0o755
        assert os.stat(base / "state").st_mode & 0o777 == 0o755
        assert os.stat(paths.leases_dir).st_mode & 0o777 == 0o700  # made by us: private
        assert os.stat(paths.socket).st_mode & 0o777 == 0o600
    finally:
        assert daemon_client.stop(paths) == pid


def test_missing_directories_are_made_private(base: Path) -> None:
    paths = DaemonPaths(str(base / "a" / "run"), str(base / "b" / "state"))
    pid = daemon_client.ensure_running(paths)
    try:
        for path in (paths.run_dir, paths.state_dir, paths.leases_dir):
            assert os.stat(path).st_mode & 0o777 == 0o700, path
    finally:
        assert daemon_client.stop(paths) == pid


def test_in_process_attach_refuses_an_unsafe_lock_dir_and_leaves_nothing(
    base: Path, bridge, make_container, ovsbridge
) -> None:
    """The per-guest lock files (one directory for the machine): never in one others can
    write."""
    run_dir = base / "locks"
    run_dir.mkdir()
    os.chmod(run_dir, 0o1777)
    box = make_container()
    env = {"OVSBRIDGE_LOCK_DIR": str(run_dir), "OVSBRIDGE_NO_DAEMON": "1"}
    result = ovsbridge("attach", bridge, box.name, "198.51.100.71/24", env=env)
    lines = result.stderr.splitlines()
    assert result.returncode == 5 and len(lines) == 1, result.stderr
    assert "refusing the lock directory" in lines[0] and "everyone can write it" in lines[0]
    assert os.stat(run_dir).st_mode & 0o7777 == 0o1777 and os.listdir(run_dir) == []
    assert ovs_ports(bridge) == set()
    assert naming.host_ifname(box.id, "eth1") not in root_links()
