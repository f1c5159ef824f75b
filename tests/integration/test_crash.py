"""SIGKILL of ``ovsbridge attach --no-daemon`` at random moments, then one ``cleanup`` (issue 9,
behaviour 2 and "Must show": 100 kills, zero leftovers, the same attach then succeeds with
the full configuration every time).

Each round: start the attach (in-process engine, OVSBRIDGE_NO_DAEMON=1), SIGKILL it after a
random delay inside the time an attach takes, run ``ovsbridge cleanup``. Then either nothing
of the attachment is left (no ovb*/ovp* link of it in the root netns or in the container, no
port row), or it is complete (the kill came after its last step): every address and route is
there. Then the same attach must succeed with the full configuration, and a detach must
bring the container back to exactly its state before the round.

It runs in a simulated host (tests/lab/simhost.py: a netns with its own private OVS), so a
``cleanup`` of every bridge is this test's alone: on a machine shared with other test runs,
their cleanups cannot judge our half-built attachment, and ours cannot judge theirs (the
per-guest locks are per OVSBRIDGE_RUN_DIR).

The seed is printed; OVSBRIDGE_CRASH_SEED=N replays a run, OVSBRIDGE_CRASH_KILLS=N sets the
number of kills of the slow variant.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from lab.shell import run
from lab.simhost import SimHost
from lab.snapshots import netns_state

from ovsbridge import naming

pytestmark = pytest.mark.lab

ADDRESS = "198.51.100.61/24@198.51.100.1,2001:db8::61/64@2001:db8::1"
WANT_ADDRESSES = {"198.51.100.61/24", "2001:db8::61/64"}
WANT_GATEWAYS = {"198.51.100.1", "2001:db8::1"}
ENV = {"OVSBRIDGE_NO_DAEMON": "1"}


@dataclass
class Report:
    seed: int
    kills: int = 0
    complete_after_kill: int = 0
    nothing_after_kill: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, round_no: int, delay: float, what: str) -> None:
        self.failures.append(f"round {round_no} (kill after {delay:.3f} s): {what}")


@dataclass
class Site:
    """Where the CLI runs: inside a SimHost's netns, against its private OVS."""

    sim: SimHost
    bridge: str

    def argv(self, *args: str) -> list[str]:
        return self.sim.ovsbridge_argv(*args)

    def env(self) -> dict[str, str]:
        return self.sim.env(ENV)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=self.env(), check=False)

    def links(self) -> set[str]:
        return {link["name"] for link in netns_state(self.sim.host_ns)["links"]}

    def port_rows(self) -> dict[str, dict[str, str]]:
        """Every OVS Port row of the private OVS, name -> external_ids, in one read."""
        out = self.sim.vsctl("--format=json", "--columns=name,external_ids", "list",
                             "Port").stdout
        return {name: dict(ids[1]) for name, ids in json.loads(out)["data"]}


def our_names(container_id: str) -> set[str]:
    host = naming.host_ifname(container_id, "eth1")
    return {host, naming.peer_tmp_ifname(host)}


def guest_view(pid: int) -> dict[str, Any]:
    state = netns_state(pid)
    links = {link["name"] for link in state["links"]}
    addrs = {a["address"] for a in state["addresses"] if a["ifname"] == "eth1"}
    gateways = {r["gateway"] for r in state["routes"]
                if r["dst"].startswith("default") and r["oif"] == "eth1" and r["gateway"]}
    return {"links": links, "addresses": addrs, "gateways": gateways, "state": state}


def leftovers(site: Site, box: Any) -> dict[str, Any]:
    """What of the attachment exists: host links, port rows, the guest's side."""
    names = our_names(box.id)
    ports = {name: ids for name, ids in site.port_rows().items()
             if name in names or ids.get(naming.K_CONTAINER_ID) == box.id}
    guest = guest_view(box.pid)
    return {
        "root_links": site.links() & names,
        "ports": ports,
        "guest_links": {n for n in guest["links"]
                        if n == "eth1" or n.startswith(naming.PEER_PREFIX)},
        "guest": guest,
    }


def complete(found: dict[str, Any]) -> bool:
    guest = found["guest"]
    return (len(found["ports"]) == 1 and len(found["root_links"]) == 1
            and found["guest_links"] == {"eth1"}
            and guest["addresses"] >= WANT_ADDRESSES and guest["gateways"] >= WANT_GATEWAYS)


def nothing(found: dict[str, Any]) -> bool:
    return not (found["ports"] or found["root_links"] or found["guest_links"])


def describe(found: dict[str, Any]) -> str:
    guest = found["guest"]
    return (f"root links {sorted(found['root_links'])}, ports {sorted(found['ports'])}, "
            f"guest links {sorted(found['guest_links'])}, addresses {sorted(guest['addresses'])}"
            f", gateways {sorted(guest['gateways'])}")


def calibrate(site: Site, box: Any) -> float:
    """How long one complete attach takes here (process start included)."""
    start = time.monotonic()
    result = site.cli("attach", site.bridge, box.name, ADDRESS, "--no-daemon")
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    detach = site.cli("detach", box.name)
    assert detach.returncode == 0, detach.stderr
    return took


def _said(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}: {(result.stdout + result.stderr).strip()[:400]}"


def crash_rounds(site: Site, box: Any, kills: int, seed: int) -> Report:
    rng = random.Random(seed)
    report = Report(seed)
    baseline = netns_state(box.pid)
    took = calibrate(site, box)
    for round_no in range(kills):
        # the whole life of the process: interpreter start, imports, every step, the end
        delay = rng.uniform(0.05, took * 1.1)
        proc = subprocess.Popen(site.argv("attach", site.bridge, box.name, ADDRESS,
                                          "--no-daemon"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=site.env())
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)  # by the PID we started (ip netns exec execs it)
        proc.wait(timeout=30)
        report.kills += 1

        result = site.cli("cleanup")
        if result.returncode != 0:
            report.fail(round_no, delay, f"cleanup: {_said(result)}")
        found = leftovers(site, box)
        if complete(found):
            report.complete_after_kill += 1
        elif nothing(found):
            report.nothing_after_kill += 1
        else:
            report.fail(round_no, delay, f"half an attachment after cleanup: {describe(found)}")

        again = site.cli("attach", site.bridge, box.name, ADDRESS)
        if again.returncode != 0:
            report.fail(round_no, delay, f"attach again: {_said(again)}")
        found = leftovers(site, box)
        if not complete(found):
            report.fail(round_no, delay, f"attach again ({_said(again)}) is not complete: "
                        f"{describe(found)}")
        ps = site.cli("ps", site.bridge, "--json")
        rows = json.loads(ps.stdout) if ps.returncode == 0 else None
        if rows is None or [r["state"] for r in rows] != ["ok"]:
            report.fail(round_no, delay, f"ps after attach again: {_said(ps)}")

        detach = site.cli("detach", box.name)
        if detach.returncode != 0:
            report.fail(round_no, delay, f"detach: {_said(detach)}")
        if netns_state(box.pid) != baseline or not nothing(leftovers(site, box)):
            report.fail(round_no, delay, f"detach left: {describe(leftovers(site, box))}")
        if report.failures and report.failures[-1].startswith(f"round {round_no} "):
            repair(site, box)  # so one stuck state does not fail every later round
    return report


def repair(site: Site, box: Any) -> None:
    """Remove what a failed round left, by name: safe here, inside our own simulated host
    with its private OVS (nothing else lives there)."""
    site.cli("detach", box.name)
    for name in our_names(box.id):
        run(["ip", "-n", site.sim.host_ns, "link", "del", name], check=False)
        site.sim.vsctl("--if-exists", "del-port", name, check=False)
    for link in guest_view(box.pid)["links"]:
        if link == "eth1" or link.startswith(naming.PEER_PREFIX):
            run(["nsenter", f"--net=/proc/{box.pid}/ns/net", "--", "ip", "link", "del", link],
                check=False)


def _seed() -> int:
    text = os.environ.get("OVSBRIDGE_CRASH_SEED")
    return int(text) if text else random.SystemRandom().randrange(1 << 30)


@pytest.fixture
def site(lab_session: Any) -> Iterator[Site]:
    sim = SimHost()
    for name in (sim.host_ns, sim.router_ns):
        lab_session.claim(name)
    sim.start()
    try:
        bridge = f"obtcr{sim.suffix}"
        sim.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
        yield Site(sim, bridge)
    finally:
        sim.stop()


def _run(site: Site, make_container: Any, kills: int) -> None:
    box = make_container()
    seed = _seed()
    print(f"crash test: seed {seed} (OVSBRIDGE_CRASH_SEED={seed} replays it), {kills} kills")
    report = crash_rounds(site, box, kills, seed)
    print(f"crash test: {report.kills} kills, {report.nothing_after_kill} left nothing, "
          f"{report.complete_after_kill} had completed, {len(report.failures)} failures")
    rounds = sorted({f.split(" (")[0] for f in report.failures})
    print("crash test failures:\n  " + "\n  ".join(report.failures))
    assert not report.failures, (f"seed {seed}: {len(rounds)} failing round(s) of {kills}:\n  "
                                 + "\n  ".join(report.failures[:20]))


def test_sigkill_of_attach_then_cleanup_leaves_nothing_and_attach_works(
    site, make_container
) -> None:
    _run(site, make_container, kills=8)


@pytest.mark.slow
def test_sigkill_of_attach_100_times(site, make_container) -> None:
    _run(site, make_container, kills=int(os.environ.get("OVSBRIDGE_CRASH_KILLS") or 100))


def test_a_cleanup_against_another_ovsdb_leaves_this_ones_attachments_alone(
    site, lab_session, make_container
) -> None:
    """Nothing foreign touched: run in the simulated host's netns (only its links are seen),
    with a second private OVS whose database knows nothing of our port."""
    other = SimHost()
    for name in (other.host_ns, other.router_ns):
        lab_session.claim(name)
    other.start()
    box = make_container()
    try:
        result = site.cli("attach", site.bridge, box.name, ADDRESS)
        assert result.returncode == 0, result.stderr
        assert complete(leftovers(site, box))
        foreign = subprocess.run(
            ["ip", "netns", "exec", site.sim.host_ns, sys.executable, "-m", "ovsbridge",
             "--db", other.db, "cleanup"],
            capture_output=True, text=True, timeout=120, env=other.env(ENV), check=False)
        assert foreign.returncode == 0, foreign.stderr
        found = leftovers(site, box)
        assert complete(found), (foreign.stdout, describe(found))
    finally:
        other.stop()
        site.cli("detach", box.name)
        site.cli("cleanup")
