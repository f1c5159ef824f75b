#!/usr/bin/env python3
"""Benchmark: clean 1,000 stale ports with the blog post's one-liner, then with ovsbridge.

    sudo /tmp/pv/bin/python scripts/bench_cleanup.py [--ports 1000] [--min-ratio 50]

Runs on a scratch Open vSwitch of its own (an ovsdb-server and an ovs-vswitchd started here
on sockets in a temporary directory, with ``--enable-dummy=override --disable-system`` so no
kernel device or datapath is touched) and never on the host's OVS: the blog's one-liner
deletes every port named veth* on every bridge it sees. The scratch switch gets one bridge
with N ports named veth*: their devices do not exist in the kernel, exactly what dead
containers leave behind (the userspace switch keeps such ports with their ofport).

It times (a) the blog post's loop, word for word (pointed at the scratch switch through
OVS_RUNDIR), one ``ovs-vsctl del-port`` process and transaction per port:

    ovs-vsctl show | grep Interface.*veth | sed 's/"//g' \
      | awk '{ cmd= "ovs-vsctl del-port "$2 ; system(cmd) }'

and (b) ``ovsbridge --db unix:.../db.sock cleanup`` (the real CLI, Python start-up
included) on the same N ports built again, checks that both removed every port, prints
the figures and the ratio, and exits 1 if the ratio is under --min-ratio. Everything it
started is stopped by PID and its directory removed, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
BLOG_ONE_LINER = ("ovs-vsctl show | grep Interface.*veth | sed 's/\"//g' | "
                  "awk '{ cmd= \"ovs-vsctl del-port \"$2 ; system(cmd) }'")
CHUNK = 250


class ScratchOvs:
    """ovsdb-server + ovs-vswitchd (dummy datapath) in DIR; stopped by PID on close."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="obtbench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "OVS_RUNDIR": str(self.dir), "OVS_LOGDIR": str(self.dir),
                    "OVS_DBDIR": str(self.dir), "LC_ALL": "C"}

    @property
    def db(self) -> str:
        return f"unix:{self.dir / 'db.sock'}"

    def start(self) -> None:
        d = self.dir
        subprocess.run(["ovsdb-tool", "create", str(d / "conf.db"), SCHEMA], check=True)
        self._spawn(["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}",
                     f"--pidfile={d / 'ovsdb-server.pid'}", f"--unixctl={d / 'ovsdb-server.ctl'}",
                     f"--log-file={d / 'ovsdb-server.log'}", "-vconsole:off", "--no-chdir"])
        self._wait_for(d / "db.sock")
        self.vsctl("--no-wait", "init")
        self._spawn(["ovs-vswitchd", self.db, "--enable-dummy=override", "--disable-system",
                     f"--pidfile={d / 'ovs-vswitchd.pid'}", f"--unixctl={d / 'ovs-vswitchd.ctl'}",
                     f"--log-file={d / 'ovs-vswitchd.log'}", "-vconsole:off", "--no-chdir"])
        self._wait_for(d / "ovs-vswitchd.ctl")

    def _spawn(self, argv: list[str]) -> None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=self.env)
        self.procs.append(proc)

    def _wait_for(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"scratch OVS did not start ({path.name} missing); "
                                   f"see {self.dir}")
            time.sleep(0.05)

    def vsctl(self, *args: str) -> str:
        return subprocess.run(["ovs-vsctl", f"--db={self.db}", "--timeout=60", *args],
                              check=True, capture_output=True, text=True, env=self.env).stdout

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def root_link_names() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get("ifname") for link in ipr.get_links()}


def port_names(count: int) -> list[str]:
    """veth + 4 random hex + a counter: named for the one-liner, absent from the kernel."""
    existing = root_link_names()
    while True:
        prefix = "veth" + secrets.token_hex(2)
        names = [f"{prefix}{i:05d}" for i in range(count)]
        if not existing & set(names):
            return names


def build_stale_ports(ovs: ScratchOvs, bridge: str, names: list[str]) -> None:
    for start in range(0, len(names), CHUNK):
        args: list[str] = []
        for name in names[start:start + CHUNK]:
            args += ["--", "add-port", bridge, name]
        ovs.vsctl(*args)


def veth_ports(ovs: ScratchOvs, bridge: str) -> list[str]:
    return [p for p in ovs.vsctl("list-ports", bridge).split() if p.startswith("veth")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000, help="stale ports to build (1000)")
    parser.add_argument("--min-ratio", type=float, default=50.0,
                        help="fail when ovsbridge is not this many times faster (50)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: run as root (it starts a scratch Open vSwitch)", file=sys.stderr)
        return 5
    ovs = ScratchOvs()
    try:
        ovs.start()
        bridge = "obtbench"
        ovs.vsctl("add-br", bridge)
        names = port_names(args.ports)

        build_stale_ports(ovs, bridge, names)
        assert len(veth_ports(ovs, bridge)) == args.ports
        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", BLOG_ONE_LINER], check=True, env=ovs.env,
                       stdout=subprocess.DEVNULL)
        blog = time.perf_counter() - t0
        left_blog = len(veth_ports(ovs, bridge))

        build_stale_ports(ovs, bridge, names)
        assert len(veth_ports(ovs, bridge)) == args.ports
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ovsbridge", "--db", ovs.db, "cleanup",
                               "--bridge", bridge, "--json"], capture_output=True, text=True,
                              env=ovs.env, check=False)
        ours = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"error: ovsbridge cleanup failed: {proc.stderr.strip()}", file=sys.stderr)
            return 1
        removed = len(json.loads(proc.stdout)["removed"])
        left_ours = len(veth_ports(ovs, bridge))
    finally:
        ovs.close()

    ratio = blog / ours
    print(f"stale ports                      {args.ports}")
    print(f"(a) blog one-liner (per port)    {blog:8.2f} s  "
          f"({blog / args.ports * 1000:.1f} ms/port, {left_blog} left)")
    print(f"(b) ovsbridge cleanup            {ours:8.2f} s  "
          f"(removed {removed}, {left_ours} left, one transaction)")
    print(f"ratio (a)/(b)                    {ratio:8.1f}x  (required >= {args.min_ratio:g}x)")
    if left_blog or left_ours or removed != args.ports:
        print("error: a method left ports behind", file=sys.stderr)
        return 1
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
