"""SIGKILL of ``ovsbridge attach --no-daemon`` at random moments, then one ``cleanup`` (issue 9,
behaviour 2 and "Must show": 100 kills, zero leftovers, the same attach then succeeds with
the full configuration every time).

Each round: start the attach (in-process engine, OVSBRIDGE_NO_DAEMON=1), SIGKILL it after a
random delay inside the time an attach takes, run ``ovsbridge cleanup``. Then either nothing
of the attachment is left (no ovb*/ovp* link of it in the root netns or in the container, no
port row), or it is complete (the kill came after its last step): every address and route is
there. Then the same attach must succeed with the full configuration, and a detach must
bring the container back to exactly its state before the round.

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
from dataclasses import dataclass, field
from typing import Any

import pytest
from lab.shell import run
from lab.snapshots import netns_state, root_links

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


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovsbridge", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **ENV}, check=False)


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


def port_rows() -> dict[str, dict[str, str]]:
    """Every OVS Port row, name -> external_ids, in one read (other test runs on this machine
    add and delete bridges meanwhile, so no list-br then list-ports)."""
    out = run(["ovs-vsctl", "--timeout=10", "--format=json", "--columns=name,external_ids",
               "list", "Port"]).stdout
    return {name: dict(ids[1]) for name, ids in json.loads(out)["data"]}


def leftovers(bridge: str, box: Any) -> dict[str, Any]:
    """What of the attachment exists: root links, port rows, the guest's side."""
    names = our_names(box.id)
    ports = {name: ids for name, ids in port_rows().items()
             if name in names or ids.get(naming.K_CONTAINER_ID) == box.id}
    guest = guest_view(box.pid)
    return {
        "root_links": root_links() & names,
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


def attach_argv(bridge: str, box: Any) -> list[str]:
    return [sys.executable, "-m", "ovsbridge", "attach", bridge, box.name, ADDRESS,
            "--no-daemon"]


def calibrate(bridge: str, box: Any) -> float:
    """How long one complete attach takes here (process start included)."""
    start = time.monotonic()
    result = subprocess.run(attach_argv(bridge, box), capture_output=True, text=True,
                            timeout=120, env={**os.environ, **ENV}, check=False)
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    detach = cli("detach", box.name)
    assert detach.returncode == 0, detach.stderr
    return took


def crash_rounds(bridge: str, box: Any, kills: int, seed: int) -> Report:
    rng = random.Random(seed)
    report = Report(seed)
    baseline = netns_state(box.pid)
    took = calibrate(bridge, box)
    for round_no in range(kills):
        # the whole life of the process: interpreter start, imports, every step, the end
        delay = rng.uniform(0.05, took * 1.1)
        proc = subprocess.Popen(attach_argv(bridge, box), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, **ENV})
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)  # by the PID we started
        proc.wait(timeout=30)
        report.kills += 1

        result = cli("cleanup")
        if result.returncode != 0:
            report.fail(round_no, delay, f"cleanup exit {result.returncode}: {result.stderr}")
        found = leftovers(bridge, box)
        if complete(found):
            report.complete_after_kill += 1
        elif nothing(found):
            report.nothing_after_kill += 1
        else:
            report.fail(round_no, delay, f"half an attachment after cleanup: {describe(found)}")

        again = cli("attach", bridge, box.name, ADDRESS)
        if again.returncode != 0:
            report.fail(round_no, delay, f"attach again: exit {again.returncode}: "
                        f"{again.stderr.strip()}")
        found = leftovers(bridge, box)
        if not complete(found):
            report.fail(round_no, delay, f"attach again is not complete: {describe(found)}")
        rows = json.loads(cli("ps", bridge, "--json").stdout or "[]")
        if [r["state"] for r in rows] != ["ok"]:
            report.fail(round_no, delay, f"ps after attach again: {rows}")

        detach = cli("detach", box.name)
        if detach.returncode != 0:
            report.fail(round_no, delay, f"detach: exit {detach.returncode}: {detach.stderr}")
        if netns_state(box.pid) != baseline or not nothing(leftovers(bridge, box)):
            report.fail(round_no, delay, f"detach left: {describe(leftovers(bridge, box))}")
            cli("cleanup")
            cli("detach", box.name)
    return report


def _seed() -> int:
    text = os.environ.get("OVSBRIDGE_CRASH_SEED")
    return int(text) if text else random.SystemRandom().randrange(1 << 30)


def _run(bridge: str, make_container: Any, kills: int) -> None:
    box = make_container()
    seed = _seed()
    print(f"crash test: seed {seed} (OVSBRIDGE_CRASH_SEED={seed} replays it), {kills} kills")
    report = crash_rounds(bridge, box, kills, seed)
    print(f"crash test: {report.kills} kills, {report.nothing_after_kill} left nothing, "
          f"{report.complete_after_kill} had completed, {len(report.failures)} failures")
    assert not report.failures, (f"seed {seed}: {len(report.failures)} failure(s):\n  "
                                 + "\n  ".join(report.failures[:20]))


def test_sigkill_of_attach_then_cleanup_leaves_nothing_and_attach_works(
    bridge, make_container
) -> None:
    _run(bridge, make_container, kills=8)


@pytest.mark.slow
def test_sigkill_of_attach_100_times(bridge, make_container) -> None:
    _run(bridge, make_container, kills=int(os.environ.get("OVSBRIDGE_CRASH_KILLS") or 100))
