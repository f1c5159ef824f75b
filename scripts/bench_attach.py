#!/usr/bin/env python3
"""Benchmark: attaching containers to an OVS bridge, ovsbridge against its peers, in one run.

Peers on this machine: Debian's ``ovs-docker`` (openvswitch-common) and the manual sequence
pipework and the blog post run (ip link add veth, ovs-vsctl add-port, ip link set netns,
ip netns exec ... rename/up/addr). pipework itself is not packaged anywhere reachable here,
so its steps are replayed as the same commands it issues. Each tool attaches the same N
``--net=none`` containers (each on its own ifname), timed per attach, wall clock. Results
are printed as ratios (peer time / ovsbridge time). Everything made is removed at the end.

Usage (as root, after ./scripts/lab.sh): .venv/bin/python scripts/bench_attach.py [-n 20]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

IMAGE = os.environ.get("OVSBRIDGE_TEST_IMAGE", "ovsbridge-test:busybox")


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def manual_attach(bridge: str, pid: int, ifname: str, address: str, tag: str) -> None:
    """The pipework / blog-post sequence, one command per step."""
    host, peer = f"pl{tag}", f"pg{tag}"
    sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
    sh("ovs-vsctl", "add-port", bridge, host)
    sh("ip", "link", "set", host, "up")
    sh("mkdir", "-p", "/var/run/netns")
    link = f"/var/run/netns/{pid}"
    if not os.path.exists(link):
        os.symlink(f"/proc/{pid}/ns/net", link)
    sh("ip", "link", "set", peer, "netns", str(pid))
    sh("ip", "netns", "exec", str(pid), "ip", "link", "set", peer, "name", ifname)
    sh("ip", "netns", "exec", str(pid), "ip", "addr", "add", address, "dev", ifname)
    sh("ip", "netns", "exec", str(pid), "ip", "link", "set", ifname, "up")
    os.unlink(link)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="containers (default 20, max 100)")
    args = parser.parse_args()
    n = max(1, min(args.n, 100))
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 5
    if shutil.which("uuidgen") is None:  # ovs-docker needs it
        sh("apt-get", "install", "-y", "-qq", "uuid-runtime")
    ovsbridge = [sys.executable, "-m", "ovsbridge"]
    suffix = secrets.token_hex(3)
    bridge = f"benchbr{suffix}"
    containers: list[tuple[str, int]] = []
    results: dict[str, list[float]] = {"ovsbridge": [], "ovs-docker": [], "manual (pipework steps)": []}
    try:
        sh("ovs-vsctl", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev")
        for i in range(n):
            cid = sh("docker", "run", "-d", "--net=none", "--label", "ovsbridge-test=1",
                     "--name", f"bench{suffix}{i}", IMAGE).strip()
            pid = int(sh("docker", "inspect", "-f", "{{.State.Pid}}", cid))
            containers.append((cid, pid))
        for i, (cid, pid) in enumerate(containers):
            results["ovsbridge"].append(timed(lambda: sh(
                *ovsbridge, "attach", bridge, cid, f"198.51.100.{10 + i}/24")))
            results["ovs-docker"].append(timed(lambda: sh(
                "ovs-docker", "add-port", bridge, "eth2", cid,
                f"--ipaddress=203.0.113.{10 + i}/24")))
            results["manual (pipework steps)"].append(timed(lambda: manual_attach(
                bridge, pid, "eth3", f"198.51.100.{130 + i}/25", f"{suffix}{i}")))
        ps_time = timed(lambda: sh(*ovsbridge, "ps", bridge))
        detach = [timed(lambda c=cid: sh(*ovsbridge, "detach", c)) for cid, _ in containers]
    finally:
        for cid, _ in containers:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", bridge], capture_output=True)
    base = statistics.median(results["ovsbridge"])
    print(f"attach of {n} containers to a netdev OVS bridge, seconds per attach (median):")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"  {name:26s} {med:7.3f}  (mean {statistics.mean(times):.3f}, "
              f"max {max(times):.3f})  ratio to ovsbridge: {med / base:5.2f}x")
    print(f"ovsbridge ps with {n} ports: {ps_time:.3f} s; detach median "
          f"{statistics.median(detach):.3f} s")
    print("note: ovsbridge's figure includes what the peers skip: MAC/MTU set, TX offload "
          "off, tagged OVS port, rollback bookkeeping, gratuitous ARP.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
