#!/usr/bin/env python3
"""Growth benchmark: static attach latency with 0, 100 and 1,000 extra ports on the bridge.

Builds its own lab (a SimHost from tests/lab: a netns with a private ovsdb-server and
ovs-vswitchd, netdev datapath) and one Docker container per tool, then times, interleaved
in each round, ``ovsbridge attach`` (in-process) of the code at --before and at --after
(both exported from git, plus any --variant), and Debian's ``ovs-docker add-port``; each
attach is undone (untimed) before the next. The extra ports are added in one ovs-vsctl
transaction (ports without a device). Reported: wall time, CPU time of the command and its
children (on a loaded machine a Python CLI's wall time is mostly waiting for a core), and
the OVS part alone (bridge read, own-port lookup, add the port; in-process). Prints tables
of medians and writes JSON. Run as root on the lab machine:

    .venv/bin/python scripts/bench_growth.py --rounds 20 --json /tmp/growth.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from lab import TEST_LABEL  # noqa: E402
from lab.simhost import SimHost  # noqa: E402

BRIDGE = "obtgrow0"
IMAGE = "ovsbridge-test:busybox"


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def export_tree(ref: str, into: Path) -> str:
    """The src/ tree of REF (a commit of this repository) under INTO; its commit id."""
    into.mkdir(parents=True, exist_ok=True)
    commit = run(["git", "-C", str(ROOT), "rev-parse", ref]).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def container(name: str) -> str:
    proc = run(["docker", "run", "-d", "--name", name, "--network", "none",
                "--label", f"{TEST_LABEL}=1", IMAGE])
    if proc.returncode != 0:
        raise SystemExit(f"docker run failed: {proc.stderr}")
    return proc.stdout.strip()


def add_extra_ports(sim: SimHost, start: int, stop: int) -> None:
    if stop <= start:
        return
    argv = ["ovs-vsctl", f"--db={sim.db}", "--timeout=120"]
    for i in range(start, stop):
        argv += ["--", "add-port", BRIDGE, f"obtx{i:04d}"]
    proc = run(argv, env=sim._ovs_env())
    if proc.returncode != 0:
        raise SystemExit(f"adding ports failed: {proc.stderr}")


ADAPTER_SNIPPET = """
import json, sys, time
from ovsbridge.system.backend import RealBackend
from ovsbridge.system.ovs import Ovs
db, bridge, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids = {"ovsbridge.owner": "ovsbridge", "ovsbridge.container_id": "bench",
       "ovsbridge.ifname": "eth1"}
out = []
for _ in range(iters):
    t0 = time.perf_counter()
    backend = RealBackend(Ovs(db=db))
    backend.bridge_info(bridge)
    try:
        backend.ports(match=ids)
    except TypeError:
        [p for p in backend.ports() if all(p.external_ids.get(k) == v for k, v in ids.items())]
    if hasattr(backend, "add_ports"):
        from ovsbridge.ops.backend import NewPort
        backend.add_ports(bridge, [NewPort("obtbench1", ids, None)], None)
    else:
        backend.add_port(bridge, "obtbench1", ids, None)
    out.append(time.perf_counter() - t0)
    backend.del_ports(["obtbench1"])
print(json.dumps(out))
"""


def adapter_times(sim: SimHost, src: Path, iters: int) -> list[float]:
    """The OVS part of one attach (bridge read, own-port lookup, add the port), in-process."""
    proc = run(["ip", "netns", "exec", sim.host_ns, "env", f"PYTHONPATH={src}", sys.executable,
                "-c", ADAPTER_SNIPPET, sim.db, BRIDGE, str(iters)], timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"adapter run failed: {proc.stderr}")
    return list(json.loads(proc.stdout))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--counts", default="0,100,1000")
    ap.add_argument("--before", default="main", help="git ref of the 'before' code")
    ap.add_argument("--after", default="HEAD", help="git ref of the 'after' code")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                    help="also time the ovsbridge whose package is under DIR (a src/ dir)")
    ap.add_argument("--adapter-iters", type=int, default=30,
                    help="iterations of the in-process OVS-only timing per count (0: skip)")
    ap.add_argument("--json", dest="json_out", help="write the figures here")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="obtgrow-"))
    # NOTE: both trees are exported, so editing the worktree during a run changes nothing.
    before_commit = export_tree(args.before, tmp / "before")
    after_commit = export_tree(args.after, tmp / "after")
    sim = SimHost()
    names: list[str] = []
    samples: dict[str, dict[int, list[float]]] = {}
    adapter: dict[str, dict[int, list[float]]] = {}
    cpu: dict[str, dict[int, list[float]]] = {}
    try:
        sim.start()
        sim.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev")
        suffix = sim.suffix
        variants = [("ovsbridge before", tmp / "before" / "src"),
                    ("ovsbridge after", tmp / "after" / "src")]
        variants += [(f"ovsbridge {v.split('=', 1)[0]}", Path(v.split("=", 1)[1]))
                     for v in args.variant]
        names = [f"obtgrow{suffix}{k}" for k in range(len(variants) + 1)]
        for name in names:
            container(name)
        base_env = sim.env({"OVSBRIDGE_NO_DAEMON": "1"})
        ovs_env = {**base_env, "OVS_RUNDIR": str(sim.tmpdir)}

        def ovsbridge(src: Path, *cli: str) -> list[str]:
            return ["ip", "netns", "exec", sim.host_ns, "env", f"PYTHONPATH={src}",
                    sys.executable, "-m", "ovsbridge", "--db", sim.db, *cli]

        def variant(src: Path, box: str) -> tuple[object, object, dict[str, str]]:
            return (lambda ip: ovsbridge(src, "attach", BRIDGE, box, ip),
                    lambda: ovsbridge(src, "detach", box), base_env)

        tools: dict[str, tuple[Any, Any, dict[str, str]]] = {
            label: variant(src, names[k]) for k, (label, src) in enumerate(variants)}
        docker_box = names[-1]
        tools["ovs-docker"] = (
            lambda ip: ["ip", "netns", "exec", sim.host_ns, "ovs-docker", "add-port",
                        BRIDGE, "eth1", docker_box, f"--ipaddress={ip}"],
            lambda: ["ip", "netns", "exec", sim.host_ns, "ovs-docker", "del-port",
                     BRIDGE, "eth1", docker_box], ovs_env)
        samples = {tool: {n: [] for n in counts} for tool in tools}
        cpu.update({tool: {n: [] for n in counts} for tool in tools})
        adapter = {label: {n: [] for n in counts} for label, _ in variants}
        have = 0
        for n in counts:
            add_extra_ports(sim, have, n)
            have = max(have, n)
            if args.adapter_iters:
                for label, src in variants:
                    adapter[label][n] = adapter_times(sim, src, args.adapter_iters)
            order = list(tools)
            for r in range(args.rounds):
                order = order[1:] + order[:1]  # rotate who goes first
                for k, tool in enumerate(order):
                    attach, undo, env = tools[tool]
                    ip = f"198.51.100.{10 + k}/24"
                    c0 = _children_cpu()
                    t0 = time.perf_counter()
                    proc = run(attach(ip), env=env, timeout=120)
                    elapsed = time.perf_counter() - t0
                    cpu[tool][n].append(_children_cpu() - c0)
                    if proc.returncode != 0:
                        raise SystemExit(f"{tool} at {n} ports failed: {proc.stderr}")
                    samples[tool][n].append(elapsed)
                    done = run(undo(), env=env, timeout=120)
                    if done.returncode != 0:
                        raise SystemExit(f"undo of {tool} failed: {done.stderr}")
                print(f"  {n} ports: round {r + 1}/{args.rounds}", file=sys.stderr)
    finally:
        for name in names:
            run(["docker", "rm", "-f", name])
        sim.stop()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)

    medians = {tool: {n: statistics.median(v) * 1000 for n, v in per.items()}
               for tool, per in samples.items()}
    head = f"{'tool':<18}" + "".join(f"{n:>9} ports" for n in counts) + f"{'max/0':>9}"
    print(head)
    for tool, per in medians.items():
        cells = "".join(f"{per[n]:>12.1f}ms" for n in counts)
        print(f"{tool:<18}{cells}{per[counts[-1]] / per[counts[0]]:>8.2f}x")
    print("\nCPU time of the command and its children (user+sys), less sensitive to load:")
    cmed = {t: {n: statistics.median(v) * 1000 for n, v in per.items()} for t, per in cpu.items()}
    print(head)
    for tool, per in cmed.items():
        cells = "".join(f"{per[n]:>12.1f}ms" for n in counts)
        print(f"{tool:<18}{cells}{per[counts[-1]] / per[counts[0]]:>8.2f}x")
    if args.adapter_iters:
        print("\nOVS part of an attach, in-process (bridge read + own-port lookup + add port):")
        amed = {t: {n: statistics.median(v) * 1000 for n, v in per.items()}
                for t, per in adapter.items()}
        print(head)
        for tool, per in amed.items():
            cells = "".join(f"{per[n]:>12.1f}ms" for n in counts)
            print(f"{tool:<18}{cells}{per[counts[-1]] / per[counts[0]]:>8.2f}x")
        medians_adapter = amed
    else:
        medians_adapter = {}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "rounds": args.rounds, "counts": counts, "before": before_commit,
            "after": after_commit, "median_ms": medians, "adapter_median_ms": medians_adapter,
            "cpu_median_ms": cmed,
            "samples_s": {t: {str(n): v for n, v in per.items()} for t, per in samples.items()},
            "machine": os.uname().nodename,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
