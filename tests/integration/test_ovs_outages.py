"""OVS outages on a private OVS (a SimHost: its own ovsdb-server and ovs-vswitchd, stopped or
frozen by the PIDs this test started): every command ends with a clear message and exit 5,
attach leaves no row and no veth, and detach/cleanup that did their work report success."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lab.simhost import SimHost, kill_pid

from ovsbridge import naming
from ovsbridge.errors import EXIT_ENVIRONMENT

pytestmark = pytest.mark.lab

BRIDGE = "obtout0"
VSWITCHD_DOWN = "error: ovs-vswitchd is not running (the change was not applied)"
NO_DAEMON = {"OVSBRIDGE_NO_DAEMON": "1"}
BOUND = 60  # seconds: a hang guard for the CLI, not a timing assertion


@pytest.fixture
def sim(lab_session: Any) -> Iterator[SimHost]:
    host = SimHost()
    for name in (host.host_ns, host.router_ns):
        lab_session.claim(name)
    host.start()
    try:
        host.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev")
        yield host
    finally:
        for name in ("ovsdb-server", "ovs-vswitchd"):
            pid = host.pids.get(name)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)  # never leave a frozen process to kill_pid
        host.stop()


def cli(sim: SimHost, *args: str) -> subprocess.CompletedProcess[str]:
    return sim.ovsbridge(*args, env=NO_DAEMON, timeout=BOUND)


def stop(sim: SimHost, name: str) -> None:
    kill_pid(sim.pids.pop(name))


def interfaces(sim: SimHost) -> set[str]:
    out = sim.vsctl("--format=json", "--columns=name", "list", "Interface").stdout
    return {row[0] for row in json.loads(out)["data"]}


def ports(sim: SimHost) -> set[str]:
    out = sim.vsctl("--format=json", "--columns=name", "list", "Port").stdout
    return {row[0] for row in json.loads(out)["data"]}


def host_end(box: Any) -> str:
    return naming.host_ifname(box.id, "eth1")


def attached(sim: SimHost, box: Any, address: str) -> str:
    res = cli(sim, "attach", BRIDGE, box.name, address)
    assert res.returncode == 0, res.stderr
    assert host_end(box) in ports(sim)
    return host_end(box)


def guest_has_eth1(netns_exec: Callable[..., Any], box: Any) -> bool:
    return netns_exec(box, "ip", "link", "show", "eth1").returncode == 0


def test_attach_with_vswitchd_down_rolls_back_and_says_so(
        sim: SimHost, make_container: Callable[..., Any], netns_exec: Callable[..., Any]) -> None:
    box = make_container()
    stop(sim, "ovs-vswitchd")
    res = cli(sim, "attach", BRIDGE, box.name, "198.51.100.91/24")
    assert res.returncode == EXIT_ENVIRONMENT, res.stderr
    assert VSWITCHD_DOWN in res.stderr
    assert "Alarm clock" not in res.stderr
    assert ports(sim) == interfaces(sim) == {BRIDGE}  # no row left behind
    assert sim.link(host_end(box)) is None  # no veth either
    assert not guest_has_eth1(netns_exec, box)


def test_detach_with_vswitchd_down_did_its_work(
        sim: SimHost, make_container: Callable[..., Any], netns_exec: Callable[..., Any]) -> None:
    box = make_container()
    port = attached(sim, box, "198.51.100.92/24")
    stop(sim, "ovs-vswitchd")
    res = cli(sim, "detach", box.name)
    assert res.returncode == 0, res.stderr
    assert f"detached: {box.name} eth1 (port {port} on {BRIDGE})" in res.stdout
    assert port not in ports(sim)
    assert sim.link(port) is None
    assert not guest_has_eth1(netns_exec, box)


def test_cleanup_with_vswitchd_down_did_its_work(
        sim: SimHost, make_container: Callable[..., Any]) -> None:
    box = make_container()
    port = attached(sim, box, "198.51.100.93/24")
    # Older than cleanup's 10 s grace, so the test need not wait for it.
    sim.vsctl("set", "Interface", port, f'external_ids:{naming.K_CREATED_AT}="1000.000"')
    subprocess.run(["docker", "rm", "-f", box.id], check=True, capture_output=True)
    stop(sim, "ovs-vswitchd")
    res = cli(sim, "cleanup", "--bridge", BRIDGE, "--json")
    assert res.returncode == 0, res.stderr
    assert [e["port"] for e in json.loads(res.stdout)["removed"]] == [port]
    assert ports(sim) == {BRIDGE}
    assert sim.link(port) is None


def test_ovsdb_server_down_is_a_clear_environment_problem(
        sim: SimHost, make_container: Callable[..., Any]) -> None:
    box = make_container()
    stop(sim, "ovsdb-server")
    for args in (("attach", BRIDGE, box.name, "198.51.100.94/24"), ("ps",),
                 ("detach", box.name), ("cleanup",)):
        res = cli(sim, *args)
        assert res.returncode == EXIT_ENVIRONMENT, (args, res.stderr)
        assert f"error: ovsdb-server is not running at {sim.db}" in res.stderr, args
        assert "hint: start Open vSwitch (ovs-ctl start) or pass --db" in res.stderr
    assert sim.link(host_end(box)) is None


def test_a_hung_ovsdb_server_does_not_hang_ps_or_attach(
        sim: SimHost, make_container: Callable[..., Any]) -> None:
    box = make_container()
    server = sim.pids["ovsdb-server"]
    os.kill(server, signal.SIGSTOP)
    try:
        for args in (("ps",), ("attach", BRIDGE, box.name, "198.51.100.95/24")):
            res = cli(sim, *args)
            assert res.returncode == EXIT_ENVIRONMENT, (args, res.stderr)
            assert f"error: ovsdb-server at {sim.db} does not answer" in res.stderr, args
    finally:
        os.kill(server, signal.SIGCONT)
    assert sim.link(host_end(box)) is None
    assert ports(sim) == {BRIDGE}
    assert cli(sim, "ps").returncode == 0  # and all is well once it answers again


def test_setup_bridge_path_ovs_vsctl_with_vswitchd_down(sim: SimHost) -> None:
    """The ovs-vsctl adapter (setup-bridge, uplinks) explains its alarm the same way."""
    stop(sim, "ovs-vswitchd")
    code = (
        "import sys\n"
        "from ovsbridge.errors import OvsbridgeError\n"
        "from ovsbridge.system.ovs import Ovs, cmd\n"
        "try:\n"
        "    Ovs(db=sys.argv[1], timeout=2).transact(cmd('--may-exist', 'add-br', 'obtout9'))\n"
        "except OvsbridgeError as exc:\n"
        "    print(exc.exit_code, exc.message)\n"
    )
    res = sim.run_in_host([sys.executable, "-c", code, sim.db], timeout=BOUND,
                          env={**os.environ, "PYTHONPATH": _src()})
    assert res.stdout.strip() == "5 ovs-vswitchd is not running (the change was not applied)", (
        res.stdout + res.stderr)


def _src() -> str:
    import ovsbridge

    return os.path.dirname(os.path.dirname(ovsbridge.__file__))
