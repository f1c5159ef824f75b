"""Fixtures of the ovsbridge test lab: real OVS, network namespaces, dockerd and dnsmasq.

No mocks: every fixture makes the real thing and removes it at teardown, even when the test
fails. The session refuses to start (non-zero exit, never a silent skip) when the machine is
not a ready lab, and fails at the end if anything that looks like ours was left behind.
The whole session runs the CLI with private daemon directories (never /run/ovsbridge): the
daemon that the CLI starts for the calls that follow is this session's, stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest
from lab.daemon_home import DaemonHome, home, stop_home_daemon  # noqa: F401 - home: fixture
from lab.guard import lab_problems
from lab.resources import Container, DhcpServer, Lab, netns_exec, ovsbridge_cli
from lab.session import LEAKCHECK_ENV, Inventory, Session, find_leaks, leakcheck_mode

from ovsbridge.paths import DaemonPaths

GUARD_EXIT_CODE = 3


@pytest.fixture(scope="session", autouse=True)
def lab_session() -> Iterator[Session]:
    """Guard the session (root, OVS, dockerd, image, clean root netns), then check for leaks."""
    problems = lab_problems()
    if problems:
        pytest.exit(
            "the lab is not ready, refusing to run the tests:\n  - " + "\n  - ".join(problems),
            returncode=GUARD_EXIT_CODE,
        )
    session = Session()
    session.open()
    baseline = Inventory.take()
    base = tempfile.mkdtemp(prefix="obts")  # short: AF_UNIX paths are <= 108 bytes
    daemon_home = DaemonHome(DaemonPaths(os.path.join(base, "run"), os.path.join(base, "state")))
    saved = {k: os.environ.get(k) for k in ("OVSBRIDGE_RUN_DIR", "OVSBRIDGE_STATE_DIR")}
    os.environ["OVSBRIDGE_RUN_DIR"] = daemon_home.paths.run_dir
    os.environ["OVSBRIDGE_STATE_DIR"] = daemon_home.paths.state_dir
    yield session
    try:
        try:
            stop_home_daemon(daemon_home)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(base, ignore_errors=True)
        leaks = find_leaks(session, baseline)
    finally:
        session.stop_descendants()
        session.close()
    if leaks:
        mode = leakcheck_mode()
        hint = (
            f"\n({LEAKCHECK_ENV}=global blames everything that looks like ours; on a machine "
            f"shared with other test runs use {LEAKCHECK_ENV}=session)"
            if mode == "global"
            else ""
        )
        pytest.fail(
            f"leak check ({mode}): the test session left these behind:\n  - "
            + "\n  - ".join(leaks)
            + hint,
            pytrace=False,
        )


@pytest.fixture(scope="session")
def names(lab_session: Session) -> Callable[[str], str]:
    """``names(tag="")``: a fresh name ``obt`` + tag[:3] + 6 hex (at most 12 characters)."""
    return lab_session.name


@pytest.fixture
def _lab(lab_session: Session) -> Iterator[Lab]:
    lab = Lab(lab_session)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def make_bridge(_lab: Lab) -> Callable[..., str]:
    """``make_bridge(name=None, datapath="netdev") -> str``: an OVS bridge, deleted after."""
    return _lab.make_bridge


@pytest.fixture
def bridge(make_bridge: Callable[..., str]) -> str:
    """A fresh netdev OVS bridge."""
    return make_bridge()


@pytest.fixture
def make_container(_lab: Lab) -> Callable[..., Container]:
    """``make_container(name=None, labels=None, network="none", image=TEST_IMAGE,
    extra_args=()) -> Container`` (id, name, pid); removed with ``docker rm -f`` after."""
    return _lab.make_container


@pytest.fixture
def make_netns(_lab: Lab) -> Callable[..., str]:
    """``make_netns(name=None) -> str``: a named netns with lo up, deleted after."""
    return _lab.make_netns


@pytest.fixture
def connect_netns(_lab: Lab) -> Callable[..., str]:
    """``connect_netns(bridge, netns, ifname="eth0", vlan=None, mac=None, mtu=None) -> port``:
    a veth from BRIDGE into NETNS (tx offload off, both ends up), removed after."""
    return _lab.connect_netns


@pytest.fixture
def spawn(_lab: Lab) -> Callable[..., subprocess.Popen[bytes]]:
    """``spawn(target, *argv, stdout=DEVNULL, stderr=DEVNULL) -> Popen``: a background
    process (inside a Container or netns, or on the host if target is None), stopped after."""
    return _lab.spawn


@pytest.fixture
def dhcp_server(_lab: Lab) -> Callable[..., DhcpServer]:
    """``dhcp_server(bridge, subnet="198.51.100.0/24", server_ip="198.51.100.1",
    pool=(".100", ".199"), lease_time="2m", router=None, dns=None, domain=None, vlan=None)
    -> DhcpServer``: a LAN router netns on BRIDGE running dnsmasq; all removed after."""
    return _lab.dhcp_server


@pytest.fixture
def ovsbridge() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``ovsbridge(*args, db=None, env=None, input=None, timeout=120)``: the real CLI as a
    subprocess (``python -m ovsbridge``); ENV entries are added to the current environment."""
    return ovsbridge_cli


@pytest.fixture(name="netns_exec")
def _netns_exec() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``netns_exec(target, *argv, timeout=60, input=None) -> CompletedProcess``: run ARGV in a
    Container (``docker exec``), a netns name (``ip netns exec``) or a netns path (nsenter)."""
    return netns_exec


def pytest_report_header(config: pytest.Config) -> list[str]:
    return ["ovsbridge lab: real OVS, netns, dockerd, dnsmasq (see tests/conftest.py)"]
