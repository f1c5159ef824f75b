"""Lab resources for one test: OVS bridges, named netns, containers, veth ports, dnsmasq.

``Lab`` creates each resource for real and pushes its undo right after the step succeeds;
``Lab.close()`` unwinds in reverse order (processes die before their netns, ports go before
their bridge), tries every undo even when one fails, and raises one LabError listing the
failures. Processes are stopped by the PID the lab started, never by name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import SESSION_LABEL, TEST_IMAGE, TEST_LABEL
from lab.session import Session
from lab.shell import LabError, run
from lab.snapshots import all_netns

DNSMASQ_READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Container:
    """A running test container: docker id, name and the PID of its init process."""

    id: str
    name: str
    pid: int

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"


@dataclass(frozen=True)
class DhcpServer:
    """A "LAN router" netns on an OVS bridge, running dnsmasq as a DHCP server at ``ip``."""

    netns: str
    ip: str
    port: str
    bridge: str
    ifname: str
    leases_path: Path
    log_path: Path
    pid: int

    def leases(self) -> list[dict[str, Any]]:
        """The lease file: one dict per lease with expiry, mac, ip, hostname, client_id."""
        try:
            text = self.leases_path.read_text()
        except FileNotFoundError:
            return []
        leases = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 5 or fields[0] == "duid":
                continue
            expiry, mac, ip, hostname, client_id = fields[:5]
            leases.append(
                {
                    "expiry": int(expiry),
                    "mac": mac.lower(),
                    "ip": ip,
                    "hostname": None if hostname == "*" else hostname,
                    "client_id": None if client_id == "*" else client_id,
                }
            )
        return leases

    def log(self) -> str:
        """dnsmasq's log so far (``--log-dhcp`` detail included)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


Target = Container | str


def exec_argv(target: Target, argv: Sequence[str]) -> list[str]:
    """The argv that runs ARGV inside TARGET: a Container, a netns name or a netns path."""
    if isinstance(target, Container):
        return ["docker", "exec", target.id, *argv]
    if "/" in target:
        return ["nsenter", f"--net={target}", "--", *argv]
    return ["ip", "netns", "exec", target, *argv]


def netns_exec(
    target: Target,
    *argv: str,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ARGV inside TARGET (``docker exec`` or ``ip netns exec``); never raises on exit."""
    return subprocess.run(
        exec_argv(target, argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )


def ovsbridge_cli(
    *args: str,
    db: str | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, ``python -m ovsbridge [--db DB] ARGS``; ENV is added to os.environ."""
    argv = [sys.executable, "-m", "ovsbridge"]
    if db is not None:
        argv += ["--db", db]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env={**os.environ, **(env or {})},
        check=False,
    )


class Lab:
    """The resources of one test, removed in reverse order by ``close()``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._undo: list[tuple[str, Callable[[], None]]] = []

    # -- bookkeeping -------------------------------------------------------------------------

    def names(self, tag: str = "") -> str:
        return self.session.name(tag)

    def defer(self, what: str, undo: Callable[[], None]) -> None:
        """Register UNDO (described by WHAT) to run at close, before anything earlier."""
        self._undo.append((what, undo))

    def close(self) -> None:
        errors = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:
                errors.append(f"{what}: {exc}")
        if errors:
            raise LabError("lab cleanup failed: " + "; ".join(errors))

    def _name(self, name: str | None, tag: str) -> str:
        if name is None:
            return self.names(tag)
        self.session.claim(name)
        return name

    # -- OVS -------------------------------------------------------------------------------

    def make_bridge(self, name: str | None = None, datapath: str = "netdev") -> str:
        """An OVS bridge on the default database, deleted at close."""
        name = self._name(name, "br")
        run(
            [
                "ovs-vsctl",
                "--timeout=10",
                "add-br",
                name,
                "--",
                "set",
                "bridge",
                name,
                f"datapath_type={datapath}",
            ]
        )
        self.defer(
            f"delete bridge {name}",
            lambda: run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", name]),
        )
        return name

    # -- network namespaces -------------------------------------------------------------------

    def make_netns(self, name: str | None = None) -> str:
        """A named netns (``/var/run/netns/NAME``) with lo up, deleted at close."""
        name = self._name(name, "ns")
        run(["ip", "netns", "add", name])
        self.defer(f"delete netns {name}", lambda: self._delete_netns(name))
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def _delete_netns(self, name: str) -> None:
        # NOTE: `ip netns del` only unmounts; a process left inside keeps the namespace (and
        # any veth in it) alive. Whatever still runs in a netns this lab made was started by
        # the test, so it is stopped here, by PID.
        pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
        for pid in pids:
            _stop_pid(int(pid))
        run(["ip", "netns", "del", name], check=False)
        if name in all_netns():
            raise LabError(f"netns {name} is still there")

    def connect_netns(
        self,
        bridge: str,
        netns: str,
        ifname: str = "eth0",
        vlan: int | None = None,
        mac: str | None = None,
        mtu: int | None = None,
    ) -> str:
        """Join NETNS to BRIDGE by a veth (IFNAME inside, up); returns the OVS port name.

        TX offload is off on both ends: on the userspace datapath a veth's TX checksum
        offload leaves UDP (and so DHCP) with bad checksums.
        """
        host = self.names("v")
        run(["ip", "link", "add", host, "type", "veth", "peer", "name", ifname, "netns", netns])
        self.defer(f"delete veth {host}", lambda: _delete_link(host))
        if mac:
            run(["ip", "-n", netns, "link", "set", ifname, "address", mac])
        if mtu:
            run(["ip", "link", "set", host, "mtu", str(mtu)])
            run(["ip", "-n", netns, "link", "set", ifname, "mtu", str(mtu)])
        run(["ethtool", "-K", host, "tx", "off"])
        run(["ip", "netns", "exec", netns, "ethtool", "-K", ifname, "tx", "off"])
        run(["ip", "link", "set", host, "up"])
        run(["ip", "-n", netns, "link", "set", ifname, "up"])
        add_port = ["ovs-vsctl", "--timeout=10", "add-port", bridge, host]
        if vlan is not None:
            add_port.append(f"tag={vlan}")
        run(add_port)
        self.defer(
            f"delete port {host}",
            lambda: run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-port", bridge, host]),
        )
        return host

    # -- processes ---------------------------------------------------------------------------

    def spawn(
        self,
        target: Target | None,
        *argv: str,
        stdout: Any = subprocess.DEVNULL,
        stderr: Any = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start ARGV in the background (inside TARGET if given); stopped by PID at close."""
        full = list(argv) if target is None else exec_argv(target, argv)
        proc = subprocess.Popen(
            full, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True
        )
        self.session.started(proc.pid, argv[0])
        self.defer(f"stop {argv[0]} (pid {proc.pid})", lambda: _stop(proc))
        return proc

    # -- containers --------------------------------------------------------------------------

    def make_container(
        self,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        network: str = "none",
        image: str = TEST_IMAGE,
        extra_args: Iterable[str] = (),
    ) -> Container:
        """A running container (``docker run -d``), removed with ``docker rm -f`` at close."""
        name = self._name(name, "c")
        argv = [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--label",
            f"{TEST_LABEL}=1",
            "--label",
            f"{SESSION_LABEL}={self.session.id}",
        ]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        proc = run([*argv, *extra_args, image], check=False, timeout=120)
        # NOTE: `docker run` may create the container and then fail to start it; remove it
        # by name either way.
        self.defer(
            f"remove container {name}",
            lambda: run(["docker", "rm", "-f", "-v", name], check=False, timeout=120),
        )
        if proc.returncode != 0:
            raise LabError(f"docker run {name}: {proc.stderr.strip()}")
        cid = proc.stdout.strip().splitlines()[-1]
        self.session.containers.add(cid)
        pid = int(run(["docker", "inspect", "-f", "{{.State.Pid}}", cid]).stdout.strip())
        if pid <= 0:
            raise LabError(f"container {name} is not running")
        return Container(id=cid, name=name, pid=pid)

    # -- DHCP server -----------------------------------------------------------------------

    def dhcp_server(
        self,
        bridge: str,
        subnet: str = "198.51.100.0/24",
        server_ip: str = "198.51.100.1",
        pool: tuple[str, str] = ("198.51.100.100", "198.51.100.199"),
        lease_time: str = "2m",
        router: str | None = None,
        dns: str | Sequence[str] | None = None,
        domain: str | None = None,
        vlan: int | None = None,
        extra_args: Sequence[str] = (),
        ipv6: str | None = None,
        dhcp6_range: str | None = None,
        dns6: str | None = None,
        domain6: str | None = None,
    ) -> DhcpServer:
        """A LAN router netns on BRIDGE at SERVER_IP, serving POOL with dnsmasq.

        ROUTER, DNS and DOMAIN become DHCP options 3, 6 and 15; when None the option is not
        sent (dnsmasq would otherwise offer itself as router). EXTRA_ARGS go to dnsmasq as
        they are (e.g. ``--dhcp-option=121,...``, ``--dhcp-host=MAC,IP``).

        IPv6 (all optional, off by default): IPV6 is the router's address on the LAN
        (``2001:db8:1::1/64``); DHCP6_RANGE a dnsmasq range such as
        ``2001:db8:1::100,2001:db8:1::1ff,64,2m`` (stateful DHCPv6) or ``2001:db8:1::,ra-only``
        (SLAAC); either turns on router advertisements (``--enable-ra``). DNS6 and DOMAIN6
        become DHCPv6 options 23 and 24 (and RA's RDNSS/DNSSL).
        """
        network = ipaddress.ip_network(subnet)
        if ipaddress.ip_address(server_ip) not in network:
            raise LabError(f"server_ip {server_ip} is outside {subnet}")
        netns = self.make_netns(self.names("dhc"))
        ifname = "lan0"
        port = self.connect_netns(bridge, netns, ifname=ifname, vlan=vlan)
        run(["ip", "-n", netns, "addr", "add", f"{server_ip}/{network.prefixlen}", "dev", ifname])

        workdir = Path(tempfile.mkdtemp(prefix=f"{netns}-"))
        self.defer(f"remove {workdir}", lambda: shutil.rmtree(workdir, ignore_errors=True))
        leases_path, log_path = workdir / "leases", workdir / "dnsmasq.log"
        if network.version == 4:
            dhcp_range = f"{pool[0]},{pool[1]},{network.netmask},{lease_time}"
        else:
            dhcp_range = f"{pool[0]},{pool[1]},{network.prefixlen},{lease_time}"
        dns_value = dns if isinstance(dns, str) or dns is None else ",".join(dns)
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            f"--interface={ifname}",
            f"--dhcp-range={dhcp_range}",
            "--dhcp-authoritative",
            f"--dhcp-leasefile={leases_path}",
            "--log-dhcp",
            f"--log-facility={log_path}",
            f"--pid-file={workdir / 'dnsmasq.pid'}",
            "--dhcp-option=3" + (f",{router}" if router else ""),
            "--dhcp-option=6" + (f",{dns_value}" if dns_value else ""),
        ]
        if domain:
            argv.append(f"--dhcp-option=15,{domain}")
        if ipv6:
            run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w",
                 f"net.ipv6.conf.{ifname}.disable_ipv6=0"])
            run(["ip", "-n", netns, "addr", "add", ipv6, "dev", ifname, "nodad"])
            # NOTE: dnsmasq only advertises and serves DHCPv6 on a link whose link-local
            # address is usable; wait for its DAD to end.
            _wait_for(lambda: "tentative" not in run(
                ["ip", "-n", netns, "-6", "addr", "show", "dev", ifname]).stdout, 5.0)
        if dhcp6_range:
            argv += [f"--dhcp-range={dhcp6_range}", "--enable-ra", f"--ra-param={ifname},10,600"]
        if dns6:
            argv.append(f"--dhcp-option=option6:dns-server,[{dns6}]")
        if domain6:
            argv.append(f"--dhcp-option=option6:domain-search,{domain6}")
        argv.extend(extra_args)
        stderr_path = workdir / "stderr"
        with stderr_path.open("wb") as stderr:
            proc = self.spawn(netns, *argv, stderr=stderr)
        server = DhcpServer(
            netns=netns,
            ip=server_ip,
            port=port,
            bridge=bridge,
            ifname=ifname,
            leases_path=leases_path,
            log_path=log_path,
            pid=proc.pid,
        )
        _wait_for(
            lambda: proc.poll() is not None or "DHCP, IP range" in server.log(),
            DNSMASQ_READY_TIMEOUT,
        )
        if proc.poll() is not None or "DHCP, IP range" not in server.log():
            raise LabError(
                f"dnsmasq in {netns} did not start (exit {proc.poll()}): "
                f"{stderr_path.read_text(errors='replace').strip()} {server.log().strip()}"
            )
        return server


def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process the lab started, and its children (it leads its own session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _delete_link(name: str) -> None:
    proc = run(["ip", "link", "del", name], check=False)
    if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
        raise LabError(f"ip link del {name}: {proc.stderr.strip()}")
