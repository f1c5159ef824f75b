#!/usr/bin/env python3
"""Benchmark: memory of keeping DHCP leases for many guests, ovsbridge's one daemon against one
client process per guest.

It builds its own lab: a netdev OVS bridge, a "LAN router" netns running dnsmasq, and N guest
network namespaces (default 100) each joined to the bridge by a veth (tx offload off). dnsmasq
runs with --no-ping: its ping check before each new offer blocks it for about 3 s per address,
which would measure dnsmasq, not the clients. Then:

1. ovsbridge: one daemon (private run/state dirs) holds the N leases, each obtained and
   applied the way ``attach ... dhcp`` does (acquire -> apply_lease -> daemon_client.hold).
   Its RSS and PSS are read from /proc after all N are held, and again after each of
   --rounds renewal rounds (dnsmasq's 2-minute lease: T1 every minute).
2. A Python helper per guest: pyroute2's own client (``pyroute2-dhcp-client``) in K guests.
3. busybox udhcpc per guest: ``busybox udhcpc -f`` in K guests.
   The per-process cost (mean RSS/PSS once each holds a lease) is multiplied by N.
4. Letting go: K guests that are processes (``unshare -n``) are killed while the daemon waits
   (dnsmasq frozen) on a raw socket inside their netns; the time until the host end of the
   veth disappears (the netns freed) is measured.

Figures are printed as ratios (per-guest processes / one daemon). Everything made is removed
at the end, also on failure (processes stopped by the PID this script started).

Usage (root, after ./scripts/lab.sh):
    .venv/bin/python scripts/bench_dhcp.py [-n 100] [-k 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SUBNET_PREFIX = "203.0.113"
SERVER = f"{SUBNET_PREFIX}.1"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def name(tag: str = "") -> str:
    return f"obt{tag[:3]}{secrets.token_hex(3)}"


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of PID."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


class Lab:
    """What the benchmark made, undone in reverse order."""

    def __init__(self) -> None:
        self.undo: list[tuple[str, Callable[[], None]]] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def defer(self, what: str, fn: Callable[[], None]) -> None:
        self.undo.append((what, fn))

    def close(self) -> None:
        failures = []
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as exc:  # every undo gets its chance
                failures.append(f"{what}: {exc}")
        if failures:
            print("cleanup problems:\n  " + "\n  ".join(failures), file=sys.stderr)

    def spawn(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.defer(f"stop {argv[0]} {proc.pid}", lambda: stop(proc))
        return proc

    def bridge(self) -> str:
        br = name("br")
        sh("ovs-vsctl", "--timeout=10", "add-br", br, "--", "set", "bridge", br,
           "datapath_type=netdev")
        self.defer(f"bridge {br}", lambda: sh("ovs-vsctl", "--if-exists", "del-br", br))
        return br

    def netns(self) -> str:
        ns = name("ns")
        sh("ip", "netns", "add", ns)
        self.defer(f"netns {ns}", lambda: sh("ip", "netns", "del", ns, check=False))
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def veth(self, bridge: str, netns_ref: str, ifname: str = "eth1") -> str:
        """A veth from BRIDGE into NETNS_REF (a netns name or a PID); returns the host end."""
        host = name("v")
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", ifname, "netns", netns_ref)
        self.defer(f"veth {host}", lambda: sh("ip", "link", "del", host, check=False))
        enter = (["ip", "netns", "exec", netns_ref] if not netns_ref.isdigit()
                 else ["nsenter", f"--net=/proc/{netns_ref}/ns/net", "--"])
        sh("ethtool", "-K", host, "tx", "off")
        sh(*enter, "ethtool", "-K", ifname, "tx", "off")
        sh("ip", "link", "set", host, "up")
        sh(*enter, "ip", "link", "set", ifname, "up")
        sh("ovs-vsctl", "--timeout=10", "add-port", bridge, host)
        self.defer(f"port {host}", lambda: sh("ovs-vsctl", "--if-exists", "del-port", host))
        return host


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def start_dnsmasq(
    lab: Lab, bridge: str, workdir: Path, lease_time: str
) -> tuple[Path, subprocess.Popen[bytes]]:
    ns = lab.netns()
    lab.veth(bridge, ns, "lan0")
    sh("ip", "-n", ns, "addr", "add", f"{SERVER}/24", "dev", "lan0")
    leases = workdir / "dnsmasq.leases"
    log = workdir / "dnsmasq.log"
    proc = lab.spawn([
        "ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
        "--port=0", "--no-resolv", "--no-hosts", "--user=root", "--interface=lan0",
        f"--dhcp-range={SUBNET_PREFIX}.10,{SUBNET_PREFIX}.250,255.255.255.0,{lease_time}",
        "--dhcp-authoritative", "--no-ping", f"--dhcp-leasefile={leases}", f"--log-facility={log}",
        f"--dhcp-option=3,{SERVER}", f"--dhcp-option=6,{SERVER}", "--dhcp-lease-max=1000",
    ])
    if not wait_until(lambda: log.exists() and "DHCP, IP range" in log.read_text(), 15):
        raise RuntimeError("dnsmasq did not start")
    return leases, proc


def guest_mac(netns: str) -> str:
    out = sh("ip", "-n", netns, "-o", "link", "show", "eth1")
    return out.split("link/ether ")[1].split()[0]


def bench_daemon(lab: Lab, bridge: str, n: int, renewal_rounds: int) -> dict[str, object]:
    from ovsbridge.system import daemon_client, dhcp

    guests = [lab.netns() for _ in range(n)]
    for ns in guests:
        lab.veth(bridge, ns)
    base = tempfile.mkdtemp(prefix="obtd")
    lab.defer(f"remove {base}", lambda: shutil.rmtree(base, ignore_errors=True))
    os.environ["OVSBRIDGE_RUN_DIR"] = os.path.join(base, "run")
    os.environ["OVSBRIDGE_STATE_DIR"] = os.path.join(base, "state")
    pid = daemon_client.ensure_running()
    lab.defer("stop the daemon", lambda: _stop_daemon(pid))
    idle = memory_kb(pid)

    def attach(ns: str) -> float:
        path = f"/var/run/netns/{ns}"
        start = time.perf_counter()
        lease = dhcp.acquire(path, "eth1", mac=guest_mac(ns), hostname=ns,
                             client_id=dhcp.client_id_for(ns, "eth1"), timeout=60)
        elapsed = time.perf_counter() - start
        dhcp.apply_lease(path, "eth1", lease)
        guest = {"kind": "netns", "key": ns, "name": ns, "pid": None, "netns_path": path,
                 "netns_inode": os.stat(path).st_ino, "resolv_conf": None}
        daemon_client.hold(guest, "eth1", lease, {"default_route": True})
        return elapsed

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        acquire_times = list(pool.map(attach, guests))
    held = len(daemon_client.status()["leases"])
    full = memory_kb(pid)
    result: dict[str, object] = {
        "pid": pid, "idle": idle, "held": held, "full": full,
        "acquire_median": statistics.median(acquire_times),
    }
    rounds = []
    for r in range(1, renewal_rounds + 1):
        status = daemon_client.status()["leases"]
        last_t1 = max(item["renew_at"] for item in status)

        def renewed(r: int = r) -> bool:
            return all(item["renewals"] >= r for item in daemon_client.status()["leases"])

        print(f"  waiting about {last_t1 - time.time():.0f} s for renewal round {r} at T1...")
        ok = wait_until(renewed, last_t1 - time.time() + 60)
        rounds.append((ok, memory_kb(pid)))
    result["rounds"] = rounds
    return result


def _stop_daemon(pid: int) -> None:
    from ovsbridge.system import daemon_client

    for item in daemon_client.status()["leases"]:
        daemon_client.drop(item["guest"]["key"], item["ifname"], release=True)
    daemon_client.stop()


def bench_helpers(lab: Lab, bridge: str, k: int, leases: Path, workdir: Path,
                  kind: str) -> list[tuple[int, int]]:
    """Start K per-guest clients of KIND; their (RSS, PSS) once each holds a lease."""
    before = leases.read_text().count("\n") if leases.exists() else 0
    procs = []
    script = workdir / "udhcpc-noop.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    client = shutil.which("pyroute2-dhcp-client") or str(
        Path(sys.executable).with_name("pyroute2-dhcp-client"))
    for _ in range(k):
        ns = lab.netns()
        lab.veth(bridge, ns)
        cwd = Path(tempfile.mkdtemp(prefix="obth", dir=workdir))
        if kind == "pyroute2":
            argv = ["ip", "netns", "exec", ns, client, "eth1", "--log-level", "WARNING"]
        else:
            argv = ["ip", "netns", "exec", ns, "busybox", "udhcpc", "-f", "-i", "eth1",
                    "-s", str(script)]
        procs.append(lab.spawn(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL))
    if not wait_until(lambda: leases.read_text().count("\n") >= before + k, 90):
        print(f"  warning: not every {kind} client got a lease", file=sys.stderr)
    time.sleep(2)  # let each settle in BOUND
    return [memory_kb(p.pid) for p in procs if p.poll() is None]


def bench_let_go(lab: Lab, bridge: str, k: int, dnsmasq: subprocess.Popen[bytes],
                 daemon_pid: int) -> list[tuple[float, bool]]:
    """Guests as processes with their own netns: kill each, time until its veth is gone."""
    from ovsbridge.system import daemon_client, dhcp

    latencies = []
    for _ in range(k):
        proc = lab.spawn(["unshare", "--net", "sleep", "3600"])
        path = f"/proc/{proc.pid}/ns/net"
        wait_until(lambda p=path: os.stat(p).st_ino != os.stat("/proc/self/ns/net").st_ino, 5)
        host = lab.veth(bridge, str(proc.pid))
        mac = sh("nsenter", f"--net={path}", "--", "ip", "-o", "link", "show", "eth1")
        mac = mac.split("link/ether ")[1].split()[0]
        lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None,
                             client_id=dhcp.client_id_for(str(proc.pid), "eth1"), timeout=60)
        dhcp.apply_lease(path, "eth1", lease)
        guest = {"kind": "pid", "key": str(proc.pid), "name": f"pid {proc.pid}",
                 "pid": proc.pid, "netns_path": path, "netns_inode": os.stat(path).st_ino}
        daemon_client.hold(guest, "eth1", lease, {})
        # Freeze the server and renew now: the daemon waits for an answer with a raw socket
        # inside the guest's netns, the case that would pin it.
        dnsmasq.send_signal(signal.SIGSTOP)
        try:
            daemon_client.renew(str(proc.pid), "eth1")
            wait_until(lambda p=path: bool(packet_sockets(p) & sockets_of(daemon_pid)), 10)
            pinned = bool(packet_sockets(path) & sockets_of(daemon_pid))
            start = time.perf_counter()
            proc.kill()
            proc.wait()
            gone = wait_until(
                lambda h=host: subprocess.run(["ip", "link", "show", h], capture_output=True)
                .returncode != 0, 30)
            latencies.append((time.perf_counter() - start if gone else float("inf"), pinned))
        finally:
            dnsmasq.send_signal(signal.SIGCONT)
    return latencies


def packet_sockets(netns_path: str) -> set[str]:
    """Inodes of the AF_PACKET sockets living in NETNS_PATH."""
    try:
        out = sh("nsenter", f"--net={netns_path}", "--", "cat", "/proc/net/packet")
    except RuntimeError:
        return set()
    return {line.split()[-1] for line in out.splitlines()[1:] if line.strip()}


def sockets_of(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="guests held by the daemon")
    parser.add_argument("-k", type=int, default=5, help="per-guest client processes sampled")
    parser.add_argument("--rounds", type=int, default=2,
                        help="renewal rounds (one a minute with the 2-minute lease) to measure "
                             "after; 0 measures only right after the leases are held")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    lab = Lab()
    workdir = Path(tempfile.mkdtemp(prefix="obtbench"))
    lab.defer(f"remove {workdir}", lambda: shutil.rmtree(workdir, ignore_errors=True))
    try:
        bridge = lab.bridge()
        leases, dnsmasq = start_dnsmasq(lab, bridge, workdir, "2m")
        print(f"ovsbridge daemon holding {args.n} leases in {args.n} netns ...")
        daemon = bench_daemon(lab, bridge, args.n, args.rounds)
        print(f"pyroute2-dhcp-client x{args.k} ...")
        py = bench_helpers(lab, bridge, args.k, leases, workdir, "pyroute2")
        print(f"busybox udhcpc x{args.k} ...")
        bb = bench_helpers(lab, bridge, args.k, leases, workdir, "udhcpc")
        print(f"letting go of {args.k} killed guests ...")
        daemon_pid = int(daemon["pid"])  # type: ignore[call-overload]
        let_go = bench_let_go(lab, bridge, args.k, dnsmasq, daemon_pid)
    finally:
        lab.close()

    n = args.n
    idle_rss, idle_pss = daemon["idle"]  # type: ignore[misc]
    rss, pss = daemon["full"]  # type: ignore[misc]
    py_rss = statistics.mean(r for r, _ in py)
    py_pss = statistics.mean(p for _, p in py)
    bb_rss = statistics.mean(r for r, _ in bb)
    bb_pss = statistics.mean(p for _, p in bb)
    print()
    print(f"ovsbridge daemon, {daemon['held']} leases held: RSS {mb(rss)}, PSS {mb(pss)} "
          f"(idle {mb(idle_rss)} / {mb(idle_pss)}; {(rss - idle_rss) / n:.0f} kB RSS per lease)")
    for r, (ok, (r2, p2)) in enumerate(daemon["rounds"], 1):  # type: ignore[arg-type]
        print(f"  after renewal round {r} (every lease renewed: {ok}): "
              f"RSS {mb(r2)}, PSS {mb(p2)}")
        rss, pss = max(rss, r2), max(pss, p2)
    print(f"  median acquire (DISCOVER..ACK, 8 at a time, dnsmasq --no-ping): "
          f"{daemon['acquire_median']:.2f} s")
    print(f"python helper per guest (pyroute2-dhcp-client): RSS {mb(py_rss)}, PSS {mb(py_pss)} "
          f"each -> x{n}: {mb(py_rss * n)} RSS")
    print(f"busybox udhcpc per guest: RSS {mb(bb_rss)}, PSS {mb(bb_pss)} each "
          f"-> x{n}: {mb(bb_rss * n)} RSS")
    print(f"(ratios against the daemon's largest figure: RSS {mb(rss)}, PSS {mb(pss)})")
    print(f"ratio python helpers / daemon: RSS {py_rss * n / rss:.1f}x, "
          f"PSS {py_pss * n / pss:.1f}x")
    print(f"ratio udhcpc / daemon:         RSS {bb_rss * n / rss:.2f}x, "
          f"PSS {bb_pss * n / pss:.2f}x")
    print(f"daemon within the 60 MB budget for {n} leases: {'yes' if rss <= 60 * 1024 else 'NO'}")
    times = [t for t, _ in let_go]
    print("guest killed while the daemon waited on a socket in its netns "
          f"(socket seen: {sum(p for _, p in let_go)}/{len(let_go)}) -> host veth gone after: "
          + ", ".join(f"{t:.2f} s" for t in times) + f" (max {max(times):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
