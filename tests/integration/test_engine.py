"""The engine on the real lab: daemon and in-process modes, serialisation, bulk, MTU, crashes.

Every test runs the real CLI against real OVS (netdev), real netns and the real dockerd; DHCP
tests run dnsmasq in a router netns. Each test has its own daemon home (the ``home``
fixture), so killing a daemon here never touches another test's.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from lab.daemon_home import kill_daemon
from lab.shell import run
from lab.snapshots import root_links

from ovsbridge import naming
from ovsbridge.system import daemon_client

pytestmark = pytest.mark.lab


def ok(result: Any) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout} {result.stderr}"
    return result


def ports_of(bridge: str) -> dict[str, dict[str, str]]:
    """Port name -> its Interface external_ids, straight from OVSDB."""
    out = run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list",
               "Interface"]).stdout
    doc = json.loads(out)
    names = set(run(["ovs-vsctl", "list-ports", bridge]).stdout.split())
    rows = {}
    for name, ids in doc["data"]:
        if name in names:
            rows[name] = dict(ids[1])
    return rows


def guest_addresses(netns_exec: Any, box: Any, ifname: str = "eth1") -> str:
    return str(netns_exec(box, "ip", "-o", "addr", "show", "dev", ifname).stdout)


def started_daemon(home: Any) -> int:
    pid = daemon_client.ensure_running(home.paths)
    assert pid
    return pid


def test_the_cli_uses_the_running_daemon_and_falls_back_without_it(
        bridge, home, make_container, ovsbridge, netns_exec):
    box = make_container()
    # No daemon: the work runs in-process, and a daemon is started for the calls after.
    ok(ovsbridge("attach", bridge, box.name, "198.51.100.20/24"))
    deadline = time.monotonic() + 15
    while home.pid() is None:
        assert time.monotonic() < deadline, "no daemon was started for the calls that follow"
        time.sleep(0.1)
    again = ok(ovsbridge("attach", bridge, box.name, "198.51.100.20/24"))
    assert "already attached" in again.stdout
    assert "198.51.100.20/24" in guest_addresses(netns_exec, box)
    # The daemon really did it: it logged nothing wrong and answers status.
    assert home.status()["pid"] == home.pid()
    ok(ovsbridge("detach", box.name))
    assert naming.host_ifname(box.id, "eth1") not in root_links()


def run_with_imports(*args: str, env: dict[str, str] | None = None
                     ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The CLI with ``-X importtime``: its result, and every module it imported."""
    argv = [sys.executable, "-X", "importtime", "-m", "ovsbridge", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    return result, imported


def test_a_script_s_attach_is_run_by_the_daemon_and_the_client_imports_no_click(
        bridge, home, make_container, ovsbridge, netns_exec):
    started_daemon(home)
    box = make_container()
    result, imported = run_with_imports("attach", bridge, box.name, "198.51.100.24/24")
    assert result.stdout.startswith(f"attached: {box.name} eth1 ")
    assert "ovsbridge.client" in imported
    assert not {"click", "dataclasses", "pyroute2", "docker", "ovsbridge.cli"} & imported
    assert "198.51.100.24/24" in guest_addresses(netns_exec, box)
    from ovsbridge.system import locks

    assert not os.path.exists(locks.lock_path(box.id, "eth1"))  # it ended: its lock file too
    # its errors: the same one line and exit code as the full CLI's
    bad = ovsbridge("attach", bridge, box.name, "198.51.100.24/33")
    local = ovsbridge("attach", bridge, box.name, "198.51.100.24/33", "--no-daemon")
    assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", local.stderr)
    ok(ovsbridge("detach", box.name))


def test_the_daemon_runs_only_the_hot_commands_for_a_client(home):
    # a client may hand over attach, detach and ps; anything else (daemon stop, setup-bridge)
    # is refused, whatever a root client sends
    from ovsbridge.client import docker_endpoint, netns_inode

    started_daemon(home)
    for argv in (["daemon", "stop"], ["setup-bridge", "eth0"], [], ["--json", "ps"]):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(home.paths.socket)
            sock.sendall(json.dumps({"op": "cli", "argv": argv, "db": None,
                                     "netns": netns_inode(), "docker": docker_endpoint(),
                                     "env": {}}).encode() + b"\n")
            answer = json.loads(sock.makefile("rb").readline())
        finally:
            sock.close()
        assert answer["ok"] is False and answer["error"]["error"] == "bad-input", argv
    assert home.pid() is not None  # still serving


def test_a_script_on_another_ovsdb_is_never_served_by_this_daemon(
        bridge, home, make_container, ovsbridge):
    started_daemon(home)
    box = make_container()
    other = {"OVSBRIDGE_DB": "unix:/var/run/openvswitch/db.sock"}  # the default, spelt out
    result, imported = run_with_imports("attach", bridge, box.name, "198.51.100.25/24",
                                        env=other)
    assert result.stdout.startswith(f"attached: {box.name} eth1 ")
    assert {"ovsbridge.cli", "pyroute2"} <= imported  # refused: the full CLI, in-process
    ok(ovsbridge("detach", box.name, env=other))


def test_no_daemon_flag_and_env_never_start_a_daemon(bridge, home, make_container, ovsbridge):
    a, b = make_container(), make_container()
    ok(ovsbridge("attach", bridge, a.name, "198.51.100.21/24", "--no-daemon"))
    ok(ovsbridge("attach", bridge, b.name, "198.51.100.22/24", env={"OVSBRIDGE_NO_DAEMON": "1"}))
    ok(ovsbridge("ps", bridge, "--no-daemon"))
    time.sleep(1.0)
    assert home.pid() is None and not os.path.exists(home.paths.lock)
    ok(ovsbridge("detach", a.name, b.name, "--no-daemon"))


def test_a_cli_with_another_ovsdb_never_hands_its_work_to_this_daemon(
        bridge, home, make_container, ovsbridge):
    started_daemon(home)
    box = make_container()
    # The default socket, named explicitly: another OVSDB as far as the daemon can tell.
    result = ok(ovsbridge("-v", "attach", bridge, box.name, "198.51.100.23/24",
                          db="unix:/var/run/openvswitch/db.sock"))
    assert "attached" in result.stdout
    assert "attach: in-process (this daemon serves netns" in result.stderr
    plain = ok(ovsbridge("-v", "ps", bridge))
    assert "ps: done by the daemon" in plain.stderr
    ok(ovsbridge("detach", box.name))


def test_twenty_parallel_identical_attaches_all_succeed_with_one_port(
        bridge, home, make_container, ovsbridge):
    started_daemon(home)
    box = make_container()
    argv = [sys.executable, "-m", "ovsbridge", "attach", bridge, box.name, "198.51.100.24/24"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 20, [r for r in results if r[0]]
    assert sum("already attached" in out for _, out, _ in results) == 19
    assert len(ports_of(bridge)) == 1


def test_parallel_identical_attaches_in_process_too(bridge, home, make_container, ovsbridge):
    box = make_container()
    argv = [sys.executable, "-m", "ovsbridge", "attach", bridge, box.name, "198.51.100.25/24",
            "--no-daemon"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    codes = [p.wait(120) for p in procs]
    errors = [p.stderr.read() for p in procs if p.stderr is not None]
    assert codes == [0] * 8, errors
    assert len(ports_of(bridge)) == 1


def test_a_range_attaches_many_and_a_failing_guest_is_rolled_back_alone(
        bridge, home, make_container, ovsbridge, netns_exec):
    boxes = [make_container() for _ in range(20)]
    stopped = boxes[7]
    run(["docker", "stop", "-t", "0", stopped.id])
    result = ovsbridge("attach", bridge, *[b.name for b in boxes],
                       "198.51.100.30-49/24@198.51.100.1", "--json")
    assert result.returncode == 1, result.stderr
    outcomes = json.loads(result.stdout)
    assert [o["guest"] for o in outcomes] == [b.name for b in boxes]
    failed = [o for o in outcomes if not o["ok"]]
    assert [o["guest"] for o in failed] == [stopped.name]
    assert failed[0]["error"]["exit_code"] == 4  # not running: a conflict
    assert len(ports_of(bridge)) == 19
    for i, box in enumerate(boxes):
        if box is stopped:
            continue
        assert f"198.51.100.{30 + i}/24" in guest_addresses(netns_exec, box)
    assert naming.host_ifname(stopped.id, "eth1") not in root_links()
    # Plain output: one line per guest and a summary.
    text = ovsbridge("attach", bridge, *[b.name for b in boxes],
                     "198.51.100.30-49/24@198.51.100.1")
    assert text.returncode == 1
    lines = text.stdout.strip().splitlines()
    assert lines[-1] == "attached 19 of 20, 1 failed"
    assert sum(line.startswith("already attached") for line in lines) == 19
    assert any(line.startswith(f"failed: {stopped.name}") for line in lines)
    ok(ovsbridge("detach", *[b.name for b in boxes if b is not stopped]))
    assert ports_of(bridge) == {}


def test_a_range_too_small_is_refused_before_anything_is_touched(
        bridge, home, make_container, ovsbridge):
    boxes = [make_container() for _ in range(3)]
    result = ovsbridge("attach", bridge, *[b.name for b in boxes], "198.51.100.30-31/24")
    assert result.returncode == 2
    assert "has 2 address(es) for 3 guests" in result.stderr
    assert ports_of(bridge) == {}


def test_from_file_lines_with_their_own_options(
        bridge, home, make_container, ovsbridge, netns_exec, tmp_path):
    a, b = make_container(), make_container()
    listing = tmp_path / "guests.txt"
    listing.write_text(f"# guests\n{a.name} 198.51.100.61/24 --vlan 5\n\n"
                       f"{b.name} 198.51.100.62/24 --ifname lan0\n")
    ok(ovsbridge("attach", bridge, "--from-file", str(listing)))
    assert "198.51.100.61/24" in guest_addresses(netns_exec, a)
    assert "198.51.100.62/24" in guest_addresses(netns_exec, b, "lan0")
    tags = run(["ovs-vsctl", "get", "Port", naming.host_ifname(a.id, "eth1"), "tag"]).stdout
    assert tags.strip() == "5"
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{a.name} 198.51.100.61/24\n{b.name} 198.51.100.999/24\n")
    result = ovsbridge("attach", bridge, "--from-file", str(bad))
    assert result.returncode == 2 and "line 2" in result.stderr
    ok(ovsbridge("detach", a.name))
    ok(ovsbridge("detach", b.name, "--ifname", "lan0"))


def test_twenty_dhcp_guests_in_one_command_get_twenty_leases(
        bridge, home, dhcp_server, make_container, ovsbridge):
    lan = dhcp_server(bridge, router="198.51.100.1")
    boxes = [make_container() for _ in range(20)]
    result = ok(ovsbridge("attach", bridge, *[b.name for b in boxes], "dhcp", "--json",
                          timeout=300))
    outcomes = json.loads(result.stdout)
    assert all(o["ok"] for o in outcomes), [o for o in outcomes if not o["ok"]]
    addresses = {o["result"]["lease"]["address"] for o in outcomes}
    assert len(addresses) == 20
    assert len(lan.leases()) >= 20
    ok(ovsbridge("detach", *[b.name for b in boxes]))


def test_a_small_mtu_port_never_lowers_the_bridge_and_reruns_stay_idempotent(
        names, home, make_container, make_bridge, ovsbridge):
    name = names("br")
    a, b = make_container(), make_container()
    try:
        ok(ovsbridge("attach", name, a.name, "198.51.100.41/24", "--create-bridge"))
        ok(ovsbridge("attach", name, b.name, "198.51.100.42/24", "--mtu", "1400"))
        mtu = run(["ovs-vsctl", "get", "Interface", name, "mtu"]).stdout.strip()
        assert mtu == "1500"
        again = ok(ovsbridge("attach", name, a.name, "198.51.100.41/24"))
        assert "already attached" in again.stdout
        rows = {r["container_name"]: r for r in
                json.loads(ok(ovsbridge("ps", name, "--json")).stdout)}
        assert rows[a.name]["mtu"] == 1500 and rows[b.name]["mtu"] == 1400
        ok(ovsbridge("detach", a.name))
        ok(ovsbridge("detach", b.name))
    finally:
        run(["ovs-vsctl", "--if-exists", "del-br", name], check=False)


def test_a_bridge_made_by_hand_keeps_its_mtu(bridge, home, make_container, ovsbridge):
    box = make_container()
    ok(ovsbridge("attach", bridge, box.name, "198.51.100.43/24", "--mtu", "1280"))
    assert run(["ovs-vsctl", "get", "Interface", bridge, "mtu"]).stdout.strip() == "1500"
    ok(ovsbridge("detach", box.name))


def test_a_tiny_mtu_with_ipv6_is_refused_clearly(bridge, home, make_container, ovsbridge):
    box = make_container()
    result = ovsbridge("attach", bridge, box.name, "198.51.100.44/24,2001:db8::44/64",
                       "--mtu", "68")
    assert result.returncode == 2 and "too small for IPv6" in result.stderr


def test_daemon_killed_mid_bulk_attach_leaves_nothing_half_done(
        bridge, home, make_container, ovsbridge, dhcp_server):
    # DHCP with no server answering keeps the daemon busy long enough to kill it mid-step.
    boxes = [make_container() for _ in range(10)]
    pid = started_daemon(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovsbridge", "attach", bridge, *[b.name for b in boxes], "dhcp",
         "--dhcp-timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(ports_of(bridge)) < 10:
        assert time.monotonic() < deadline, "the bulk attach never reached the OVS step"
        time.sleep(0.05)
    kill_daemon(pid, signal.SIGKILL)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "daemon stopped while running 'attach'" in err
    # Half-done pieces are there now; the next daemon sweeps them at start.
    started_daemon(home)
    deadline = time.monotonic() + 30
    while ports_of(bridge) or [n for n in root_links() if any(
            n == naming.host_ifname(b.id, "eth1") for b in boxes)]:
        assert time.monotonic() < deadline, (ports_of(bridge), home.log()[-2000:])
        time.sleep(0.2)
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    assert rows == []
    # And the same attach works afterwards, with a server this time.
    dhcp_server(bridge, router="198.51.100.1")
    ok(ovsbridge("attach", bridge, boxes[0].name, "dhcp"))
    ok(ovsbridge("detach", boxes[0].name))


def test_a_non_root_user_is_refused_by_the_daemon(home):
    started_daemon(home)
    nobody = pwd.getpwnam("nobody")
    # The socket is 0600 in a 0700 dir: open those up, so only SO_PEERCRED stands in the way.
    base = os.path.dirname(home.paths.run_dir)
    os.chmod(base, 0o755)
    os.chmod(home.paths.run_dir, 0o755)
    os.chmod(home.paths.socket, 0o666)
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        f"s.connect({home.paths.socket!r})\n"
        "sys.stdout.write(s.makefile().readline())\n"  # refused at once, before any request
    )
    # Debian's python3 (the lab installs it): the venv's interpreter lives under /root.
    child = subprocess.run(
        ["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)), check=False)
    assert child.stdout, child.stderr
    answer = json.loads(child.stdout)
    assert answer["ok"] is False and "may not use the ovsbridge daemon" in \
        answer["error"]["message"]
    os.chmod(home.paths.run_dir, 0o700)
    os.chmod(home.paths.socket, 0o600)
    os.chmod(base, 0o700)
    # root still is served
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(home.paths.socket)
        sock.sendall(b'{"op": "ping"}\n')
        assert json.loads(sock.makefile().readline())["ok"] is True
