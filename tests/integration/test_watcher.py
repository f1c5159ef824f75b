"""The daemon's Docker watcher on the real lab: real dockerd, OVS (netdev), netns, dnsmasq.

Isolation on a shared machine: the containers live on a private dockerd (its own socket, data
and exec roots, started here and stopped by PID), so no other watcher on this host sees their
events and ours never sees anyone else's; each test runs its own daemon (private run and
state directories) limited with OVSBRIDGE_WATCH_BRIDGES to the test's bridge.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration import private_docker
from integration.private_docker import STOP_TIMEOUT, inspect, stop_process, wait_for
from lab.shell import run
from lab.snapshots import netns_state, ovs_ports

from ovsbridge import naming
from ovsbridge.ops.cleanup import MIN_AGE

pytestmark = pytest.mark.lab

# fixtures of the private dockerd (see private_docker.py)
private_dockerd = private_docker.private_dockerd
box_maker = private_docker.box_maker



@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ovsbridge", *args], capture_output=True,
                              text=True, env=self.env, timeout=120, check=False)

    def status(self) -> dict[str, Any] | None:
        result = self.cli("daemon", "status", "--json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def watcher(self) -> dict[str, Any]:
        status = self.status()
        assert status is not None, f"the daemon does not answer; log:\n{self.log()}"
        section: dict[str, Any] = status["watcher"]
        return section

    def container(self, cid: str) -> dict[str, Any] | None:
        return next((c for c in self.watcher()["containers"] if c["id"] == cid), None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_daemon(make_bridge: Any) -> Iterator[Callable[..., Daemon]]:
    """``start_daemon(bridge, **env) -> Daemon``: a private daemon watching BRIDGE only;
    stopped (by PID) before the lab's bridges and containers are removed."""
    root = Path(tempfile.mkdtemp(prefix="obtwd-"))
    procs: list[subprocess.Popen[bytes]] = []

    def start(bridge: str, **extra: str) -> Daemon:
        env = {**os.environ, "OVSBRIDGE_RUN_DIR": str(root / "run"),
               "OVSBRIDGE_STATE_DIR": str(root / "state"), "OVSBRIDGE_WATCH": "on",
               "OVSBRIDGE_WATCH_BRIDGES": bridge, **extra}
        log_path = root / f"daemon{len(procs)}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ovsbridge", "daemon", "run", "--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        procs.append(proc)
        daemon = Daemon(proc, env, log_path)

        def ready() -> bool:
            assert proc.poll() is None, f"the daemon exited:\n{daemon.log()}"
            status = daemon.status()
            return bool(status and status.get("watcher", {}).get("last_reconcile"))

        wait_for(ready, "the daemon's first reconcile")
        return daemon

    yield start
    for proc in reversed(procs):
        stop_process(proc)
    shutil.rmtree(root, ignore_errors=True)


def guest_iface(pid: int, ifname: str = "eth1") -> tuple[str, list[str]] | None:
    """(MAC, IPv4 addresses) of IFNAME in the netns of PID, or None."""
    try:
        state = netns_state(pid)
    except Exception:
        return None
    link = next((x for x in state["links"] if x["name"] == ifname), None)
    if link is None:
        return None
    addrs = [a["address"] for a in state["addresses"]
             if a["ifname"] == ifname and ":" not in a["address"]]
    return link["mac"], addrs


def configured_iface(pid: int, ifname: str = "eth1") -> tuple[str, list[str]] | None:
    """Like guest_iface, but None until the interface has its IPv4 address too (attach adds
    the address after the link appears, so waiting for the link alone races with it)."""
    found = guest_iface(pid, ifname)
    return found if found and found[1] else None


def ports_of(bridge: str, cid: str) -> list[str]:
    out = run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list",
               "Interface"]).stdout
    names = ovs_ports(bridge)
    found = []
    for name, ids in json.loads(out)["data"]:
        if name in names and isinstance(ids, list) and \
                dict(ids[1]).get(naming.K_CONTAINER_ID) == cid:
            found.append(name)
    return found


def labels(bridge: str, address: str, **extra: str) -> dict[str, str]:
    out = {"ovsbridge.bridge": bridge, "ovsbridge.address": address}
    out.update({f"ovsbridge.{k}": v for k, v in extra.items()})
    return out


def wait_older_than_min_age(bridge: str) -> None:
    out = run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list",
               "Interface"]).stdout
    names = ovs_ports(bridge)
    newest = max((float(dict(ids[1]).get(naming.K_CREATED_AT) or 0)
                  for name, ids in json.loads(out)["data"]
                  if name in names and isinstance(ids, list)), default=0.0)
    delay = newest + MIN_AGE + 0.5 - time.time()
    if delay > 0:
        time.sleep(delay)


# ----- tests ----------------------------------------------------------------------------------
def test_labelled_container_is_attached_and_keeps_mac_and_lease_across_restart(
    bridge, dhcp_server, private_dockerd, box_maker, start_daemon
):
    server = dhcp_server(bridge)
    daemon = start_daemon(bridge, DOCKER_HOST=private_dockerd.host)
    box = box_maker(labels(bridge, "dhcp"))
    mac, addrs = wait_for(lambda: configured_iface(box.pid), "a DHCP lease")
    assert mac == naming.stable_mac(box.id, "eth1")
    assert addrs[0].startswith("198.51.100.")
    assert [lease["mac"] for lease in server.leases()] == [mac]
    first_ports = wait_for(lambda: ports_of(bridge, box.id), "the port")
    assert wait_for(lambda: (daemon.container(box.id) or {}).get("state") == "attached",
                    "status: attached")

    private_dockerd.docker("restart", "-t", "0", box.id)
    pid = int(inspect(box.id, private_dockerd.host)["State"]["Pid"])
    assert pid != box.pid
    again = wait_for(lambda: configured_iface(pid), "the lease after restart")
    assert again == (mac, addrs)
    assert ports_of(bridge, box.id) == first_ports  # the stale one went, the new one is back
    status = daemon.status()
    assert status is not None
    held = [lease for lease in status["leases"] if lease.get("ifname") == "eth1"]
    assert len(held) == 1 and str(held[0]["address"]).split("/")[0] == addrs[0].split("/")[0]
    assert [lease["mac"] for lease in server.leases()] == [mac]


def test_docker_kill_removes_the_port_and_the_lease(bridge, dhcp_server, private_dockerd,
                                                     box_maker, start_daemon, capsys):
    dhcp_server(bridge)
    daemon = start_daemon(bridge, DOCKER_HOST=private_dockerd.host)
    static = box_maker(labels(bridge, "198.51.100.21/24"))
    leased = box_maker(labels(bridge, "dhcp", ifname="lan0"))
    wait_for(lambda: ports_of(bridge, static.id), "the static port")
    wait_for(lambda: configured_iface(leased.pid, "lan0"), "the DHCP lease")
    wait_for(lambda: len(daemon.status()["leases"]) == 1, "the lease held")  # type: ignore[index]
    for box in (static, leased):
        port = ports_of(bridge, box.id)[0]
        t0 = time.monotonic()
        private_dockerd.docker("kill", box.id)
        wait_for(lambda port=port: port not in ovs_ports(bridge), f"{port} removed", 30)
        with capsys.disabled():
            print(f"\n  docker kill -> port {port} removed in {time.monotonic() - t0:.2f} s")
    status = daemon.status()
    assert status is not None and status["leases"] == []
    states = {c["name"]: c["state"] for c in status["watcher"]["containers"]}
    assert states == {static.name: "stopped", leased.name: "stopped"}, daemon.log()
    ps = json.loads(daemon.cli("ps", bridge, "--json").stdout)
    assert [row["state"] for row in ps] == ["ok"]  # only the DHCP server's port is left


def test_bad_labels_leave_the_container_unattached_with_one_log_line(
    bridge, private_dockerd, box_maker, start_daemon
):
    daemon = start_daemon(bridge, DOCKER_HOST=private_dockerd.host)
    bad = box_maker(labels(bridge, "198.51.100.31/24", vlan="9999"))
    good = box_maker(labels(bridge, "198.51.100.32/24"))
    wait_for(lambda: (daemon.container(bad.id) or {}).get("state") == "bad labels",
             "status: bad labels")
    wait_for(lambda: ports_of(bridge, good.id), "the good container's port")
    private_dockerd.docker("restart", "-t", "0", bad.id)  # a second start: still one line
    wait_for(lambda: daemon.watcher()["events"] >= 5, "the restart's events")
    lines = [line for line in daemon.log().splitlines() if "left unattached" in line]
    assert len(lines) == 1, lines
    assert bad.name in lines[0] and "ovsbridge.vlan='9999': VLAN 9999 is out of range" in lines[0]
    assert ports_of(bridge, bad.id) == []
    assert daemon.proc.poll() is None and daemon.status() is not None


def test_daemon_sigkilled_while_containers_die_reconciles_when_started_again(
    bridge, private_dockerd, box_maker, start_daemon
):
    first = start_daemon(bridge, DOCKER_HOST=private_dockerd.host)
    boxes = [box_maker(labels(bridge, f"198.51.100.{41 + i}/24")) for i in range(3)]
    manual = box_maker()
    attached = first.cli("attach", bridge, manual.name, "198.51.100.49/24")
    assert attached.returncode == 0, attached.stderr
    for box in boxes:
        wait_for(lambda box=box: ports_of(bridge, box.id), f"{box.name} attached")
    survivor_port = ports_of(bridge, boxes[2].id)

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(STOP_TIMEOUT)
    private_dockerd.docker("kill", boxes[0].id)
    private_dockerd.docker("rm", "-f", boxes[1].id)
    private_dockerd.docker("kill", manual.id)
    late = box_maker(labels(bridge, "198.51.100.48/24"))
    wait_older_than_min_age(bridge)
    assert ports_of(bridge, boxes[0].id) and ports_of(bridge, manual.id)  # nobody cleaned yet
    assert ports_of(bridge, late.id) == []

    second = start_daemon(bridge, DOCKER_HOST=private_dockerd.host)
    for gone in (boxes[0], boxes[1], manual):
        assert ports_of(bridge, gone.id) == []
    assert ports_of(bridge, boxes[2].id) == survivor_port
    wait_for(lambda: ports_of(bridge, late.id), "the late container attached")
    iface = wait_for(lambda: configured_iface(late.pid), "eth1 in the late container")
    assert iface[1] == ["198.51.100.48/24"]
    assert len(second.watcher()["last_reconcile"]["stale_removed"]) == 3


def test_dockerd_restart_under_a_running_daemon_reconnects_and_reconciles(
    bridge, private_dockerd, box_maker, start_daemon
):
    daemon = start_daemon(bridge, DOCKER_HOST=private_dockerd.host)
    box = box_maker(labels(bridge, "198.51.100.61/24"), restart="always")
    mac = wait_for(lambda: guest_iface(box.pid), "attached on the private dockerd")[0]
    old_port = wait_for(lambda: ports_of(bridge, box.id), "its port")
    connections = daemon.watcher()["docker"]["connections"]

    private_dockerd.stop()  # its containers die with it (no live-restore)
    wait_for(lambda: not daemon.watcher()["docker"]["connected"], "the watcher noticing")
    assert daemon.proc.poll() is None
    private_dockerd.start()  # restarts the --restart=always container

    wait_for(lambda: daemon.watcher()["docker"]["connections"] > connections,
             "the reconnection", 90)
    host = private_dockerd.host
    new_pid = wait_for(lambda: int(inspect(box.id, host)["State"]["Pid"] or 0), "the restart")
    assert new_pid != box.pid
    again = wait_for(lambda: configured_iface(new_pid), "re-attached after the dockerd restart")
    assert again == (mac, ["198.51.100.61/24"])
    wait_for(lambda: ports_of(bridge, box.id) == old_port, "exactly one port for it")
    ps = json.loads(daemon.cli("ps", bridge, "--json").stdout)
    assert [(row["container_id"], row["state"]) for row in ps] == [(box.id, "ok")]
    assert daemon.proc.poll() is None
