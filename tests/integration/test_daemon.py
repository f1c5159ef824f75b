"""The lease-keeping daemon on the real lab: dnsmasq in its own netns on an OVS netdev bridge,
``--net=none`` containers (or named netns) whose eth1 the test makes itself.

Each test gets private OVSBRIDGE_RUN_DIR/OVSBRIDGE_STATE_DIR; the daemon is started the way
attach starts it (``daemon_client.hold``) and stopped by its PID at teardown, which also
checks that no daemon, socket, lock or state file is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable

import pytest
from lab.daemon_home import DaemonHome, kill_daemon  # noqa: F401
from lab.resources import Container
from lab.shell import run

from ovsbridge.system import daemon_client, dhcp

pytestmark = pytest.mark.lab

SUBNET = "203.0.113.0/24"
SERVER = "203.0.113.1"


@pytest.fixture
def lan(bridge, dhcp_server):
    return dhcp_server(bridge, subnet=SUBNET, server_ip=SERVER,
                       pool=("203.0.113.100", "203.0.113.199"), router=SERVER, dns=SERVER)


def container_eth1(make_container, _lab, bridge: str) -> tuple[Container, str, str]:
    """A --net=none container with an eth1 on BRIDGE made here by hand (attach is not used)."""
    container = make_container()
    path = container.netns_path
    host = _lab.names("v")
    tmp = _lab.names("p")
    run(["ip", "link", "add", host, "type", "veth", "peer", "name", tmp, "netns",
         str(container.pid)])
    _lab.defer(f"delete veth {host}", lambda: run(["ip", "link", "del", host], check=False))
    run(["nsenter", f"--net={path}", "--", "ip", "link", "set", tmp, "name", "eth1"])
    run(["ethtool", "-K", host, "tx", "off"])
    run(["nsenter", f"--net={path}", "--", "ethtool", "-K", "eth1", "tx", "off"])
    run(["ip", "link", "set", host, "up"])
    run(["nsenter", f"--net={path}", "--", "ip", "link", "set", "eth1", "up"])
    run(["ovs-vsctl", "--timeout=10", "add-port", bridge, host])
    _lab.defer(f"delete port {host}",
               lambda: run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-port", bridge, host]))
    mac = run(["nsenter", f"--net={path}", "--", "ip", "-o", "link", "show", "eth1"]).stdout
    return container, host, mac.split("link/ether ")[1].split()[0]


def guest_dict(container: Container) -> dict:
    """What attach hands over: dataclasses.asdict(model.Guest) for a Docker container."""
    return {
        "kind": "docker", "key": container.id, "name": container.name, "pid": container.pid,
        "netns_path": container.netns_path,
        "netns_inode": os.stat(container.netns_path).st_ino, "resolv_conf": None,
    }


def attach_dhcp(container: Container, mac: str, hostname: str) -> dhcp.Lease:
    """What ``attach ... dhcp`` does after the veth is in place, in its order."""
    cid = dhcp.client_id_for(container.id, "eth1")
    lease = dhcp.acquire(container.netns_path, "eth1", mac=mac, hostname=hostname,
                         client_id=cid, timeout=30)
    dhcp.apply_lease(container.netns_path, "eth1", lease)
    daemon_client.hold(guest_dict(container), "eth1", lease,
                       {"default_route": True, "dns": False, "resolv_conf": None})
    return lease


def addresses(netns_path: str) -> list[str]:
    out = run(["nsenter", f"--net={netns_path}", "--", "ip", "-4", "-o", "addr", "show", "eth1"])
    return [line.split()[3] for line in out.stdout.splitlines()]


def acks(lan, ip: str) -> int:
    return sum(1 for line in lan.log().splitlines() if f"DHCPACK(lan0) {ip} " in line)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def root_link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def packet_socket_inodes(netns_path: str) -> set[str]:
    """Inodes of the AF_PACKET sockets that live in NETNS_PATH (/proc/net/packet there)."""
    out = run(["nsenter", f"--net={netns_path}", "--", "cat", "/proc/net/packet"]).stdout
    return {line.split()[-1] for line in out.splitlines()[1:] if line.strip()}


def socket_inodes_of(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                found.add(target[len("socket:["):-1])
    return found


# --------------------------------------------------------------------------------------------


def test_hold_starts_one_detached_daemon_that_shows_the_lease(
    lan, make_container, _lab, home, ovsbridge
) -> None:
    assert home.pid() is None
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = attach_dhcp(container, mac, "held1")

    pid = home.pid()
    assert pid is not None and pid != os.getpid()
    assert os.getsid(pid) == pid  # its own session: detached from the caller
    [item] = home.leases()
    assert item["guest"]["key"] == container.id and item["ifname"] == "eth1"
    assert item["address"] == lease.address.with_prefixlen and item["state"] == "bound"
    assert len(home.state_files()) == 1
    assert oct(os.stat(home.paths.socket).st_mode & 0o777) == "0o600"
    assert oct(os.stat(home.paths.run_dir).st_mode & 0o777) == "0o700"
    assert oct(os.stat(home.paths.state_dir).st_mode & 0o777) == "0o700"

    # a second hold (another guest) reuses the same daemon
    other, _, mac2 = container_eth1(make_container, _lab, lan.bridge)
    attach_dhcp(other, mac2, "held2")
    assert home.pid() == pid and len(home.leases()) == 2

    shown = ovsbridge("daemon", "status")
    assert shown.returncode == 0, shown.stderr
    assert container.name in shown.stdout and str(lease.address) in shown.stdout
    as_json = ovsbridge("daemon", "status", "--json")
    assert {i["ifname"] for i in json.loads(as_json.stdout)["leases"]} == {"eth1"}


def test_status_and_stop_without_a_daemon(home, ovsbridge) -> None:
    shown = ovsbridge("daemon", "status")
    assert shown.returncode == 3
    assert shown.stderr.startswith("error: no ovsbridge daemon is running")
    as_json = ovsbridge("daemon", "status", "--json")
    assert as_json.returncode == 3 and json.loads(as_json.stderr)["exit_code"] == 3
    stopped = ovsbridge("daemon", "stop")
    assert stopped.returncode == 0 and "no ovsbridge daemon" in stopped.stdout
    assert not os.path.exists(home.paths.run_dir)


def test_daemon_stop_and_sigterm_keep_the_lease_for_the_next_daemon(
    lan, make_container, _lab, home, ovsbridge
) -> None:
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = attach_dhcp(container, mac, "keep")

    kill_daemon(home.pid(), signal.SIGTERM)
    assert home.pid() is None and not os.path.exists(home.paths.socket)
    assert len(home.state_files()) == 1  # nothing released, nothing forgotten
    assert addresses(container.netns_path) == [lease.address.with_prefixlen]

    daemon_client.ensure_running()
    assert [i["address"] for i in home.leases()] == [lease.address.with_prefixlen]
    stopped = ovsbridge("daemon", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert home.pid() is None and len(home.state_files()) == 1
    daemon_client.ensure_running()  # the fixture drops (and releases) it at the end


def test_sigkill_and_restart_resume_with_init_reboot_and_keep_the_address(
    lan, make_container, _lab, home
) -> None:
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = attach_dhcp(container, mac, "phoenix")
    ip = str(lease.address.ip)
    before = acks(lan, ip)
    discovers = lan.log().count("DHCPDISCOVER")

    kill_daemon(home.pid(), signal.SIGKILL)
    assert os.path.exists(home.paths.socket)  # left behind by the dead daemon
    assert addresses(container.netns_path) == [lease.address.with_prefixlen]

    daemon_client.ensure_running()
    wait_for(lambda: acks(lan, ip) > before, 30, "the INIT-REBOOT DHCPACK")
    wait_for(lambda: home.leases()[0]["state"] == "bound", 30, "the resumed lease")
    [item] = home.leases()
    assert item["address"] == lease.address.with_prefixlen
    assert item["obtained_at"] > lease.obtained_at  # confirmed by the server again
    assert addresses(container.netns_path) == [lease.address.with_prefixlen]
    assert lan.log().count("DHCPDISCOVER") == discovers  # REQUEST/ACK only: INIT-REBOOT


def test_guest_killed_mid_exchange_is_let_go_and_its_netns_freed(
    lan, make_container, _lab, home
) -> None:
    container, host_end, mac = container_eth1(make_container, _lab, lan.bridge)
    attach_dhcp(container, mac, "doomed")
    daemon_pid = home.pid()

    # Freeze dnsmasq and make the daemon renew now: it now holds a raw socket inside the
    # container's netns while it waits for an answer that will not come.
    os.kill(lan.pid, signal.SIGSTOP)
    try:
        assert daemon_client.renew(container.id, "eth1")
        wait_for(
            lambda: packet_socket_inodes(container.netns_path) & socket_inodes_of(daemon_pid),
            10, "the daemon's socket in the container's netns",
        )
        assert home.leases()[0]["state"] == "renewing"

        run(["docker", "kill", container.id])

        # The daemon lets go (pidfd), the kernel frees the netns, and with it the veth pair.
        wait_for(lambda: not root_link_exists(host_end), 15, "the host end of the veth to go")
        assert home.leases() == [] and home.state_files() == []
        assert "exited; letting go" in home.log()
    finally:
        os.kill(lan.pid, signal.SIGCONT)


def test_named_netns_deleted_is_let_go(lan, make_netns, connect_netns, home) -> None:
    name = make_netns()
    path = f"/var/run/netns/{name}"
    connect_netns(lan.bridge, name, ifname="eth1")
    mac = run(["ip", "-n", name, "-o", "link", "show", "eth1"]).stdout
    mac = mac.split("link/ether ")[1].split()[0]
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00ns", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)
    guest = {"kind": "netns", "key": name, "name": name, "pid": None, "netns_path": path,
             "netns_inode": os.stat(path).st_ino, "resolv_conf": None}
    daemon_client.hold(guest, "eth1", lease, {})
    assert len(home.leases()) == 1

    run(["ip", "netns", "del", name])

    wait_for(lambda: home.leases() == [], 15, "the daemon to drop the deleted netns")
    assert home.state_files() == []


def test_drop_releases_at_the_server(lan, make_container, _lab, home) -> None:
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = attach_dhcp(container, mac, "bye")
    assert [r["ip"] for r in lan.leases()] == [str(lease.address.ip)]

    dropped = daemon_client.drop(container.id, "eth1", release=True)

    assert [d["lease"]["address"] for d in dropped] == [lease.address.with_prefixlen]
    wait_for(lambda: lan.leases() == [], 10, "dnsmasq to forget the released lease")
    assert home.leases() == [] and home.state_files() == []
    assert daemon_client.drop(container.id, "eth1") == []  # twice is fine


def test_twenty_guests_held_by_one_daemon(lan, make_netns, connect_netns, home) -> None:
    for i in range(20):
        name = make_netns()
        path = f"/var/run/netns/{name}"
        connect_netns(lan.bridge, name, ifname="eth1")
        mac = run(["ip", "-n", name, "-o", "link", "show", "eth1"]).stdout
        mac = mac.split("link/ether ")[1].split()[0]
        lease = dhcp.acquire(path, "eth1", mac=mac, hostname=f"n{i}",
                             client_id=f"\x00n{i}".encode(), timeout=30)
        dhcp.apply_lease(path, "eth1", lease)
        guest = {"kind": "netns", "key": name, "name": name, "pid": None, "netns_path": path,
                 "netns_inode": os.stat(path).st_ino, "resolv_conf": None}
        daemon_client.hold(guest, "eth1", lease, {"default_route": True})
    held = home.leases()
    assert len(held) == 20 and len({i["address"] for i in held}) == 20
    assert len(home.state_files()) == 20


@pytest.mark.slow
def test_renews_at_t1_and_keeps_renewing_after_sigkill_and_restart(
    lan, make_container, _lab, home
) -> None:
    """dnsmasq's shortest lease (2 min): T1 at 60 s. About two and a half minutes."""
    container, _, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = attach_dhcp(container, mac, "renewer")
    ip = str(lease.address.ip)
    [record] = lan.leases()
    first_expiry = record["expiry"]
    start = acks(lan, ip)

    wait_for(lambda: acks(lan, ip) > start, 100, "the renewal at T1")
    assert f"DHCPREQUEST(lan0) {ip} {mac}" in lan.log()
    wait_for(lambda: lan.leases()[0]["expiry"] > first_expiry, 10, "the expiry to move")
    assert addresses(container.netns_path) == [lease.address.with_prefixlen]
    [item] = home.leases()
    assert item["renewals"] >= 1 and item["address"] == lease.address.with_prefixlen

    kill_daemon(home.pid(), signal.SIGKILL)
    daemon_client.ensure_running()
    wait_for(lambda: home.leases() and home.leases()[0]["state"] == "bound", 30, "resume")
    resumed = acks(lan, ip)
    wait_for(lambda: acks(lan, ip) > resumed, 100, "a renewal by the restarted daemon")
    assert addresses(container.netns_path) == [lease.address.with_prefixlen]
    out = run(["nsenter", f"--net={container.netns_path}", "--", "ip", "-4", "addr", "show",
               "eth1"]).stdout
    assert "valid_lft forever" not in out  # the lifetime follows the lease

