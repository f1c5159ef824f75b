"""The real pipework and ``ovsbridge pipework`` with the same arguments give the same result.

For each pipework command line, the real script (../shared/peers/pipework, unchanged) runs on
one container and ``ovsbridge pipework`` on another, one after the other on the same bridge
(the first container is removed and its port cleaned before the second one runs, so static
addresses and DHCP leases do not collide). Then both containers' state is read the same way
(``ip -o addr/route/link`` in their netns, ``ovs-vsctl get Port tag``) and compared: nothing
here writes down what either tool should produce.

Normalised before comparing, because they are bookkeeping and not configuration: interface
indexes, route ``proto``/``metric``/``pref``, address lifetimes and DAD flags (ovsbridge adds
IPv6 addresses ``nodad``, usable at once; pipework's go through DAD first). MACs are compared
when the command line fixes one (otherwise pipework keeps the kernel's random MAC) and so are
addresses taken by DHCP (with a random MAC the lease is another one).

Where the lab lacks what pipework expects from a host, the test supplies it and says so: a
local ``busybox`` image whose udhcpc finds its default script (for ``dhcp``), a host
``udhcpc`` (busybox's, with that script), and for ``-a 6`` a PATH without busybox (pipework's
``busybox ipcalc -b`` rejects IPv6 prefixes, and pipework then fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
from lab import TEST_IMAGE
from lab.daemon_home import home
from lab.peers import ip_in, need_pipework, pipework
from lab.resources import ovsbridge_cli

pytestmark = pytest.mark.lab

private_dockerd = private_docker.private_dockerd
__all__ = ["home"]  # the private daemon home fixture (DHCP attaches start a daemon)

# busybox's examples/udhcp/simple.script (what the busybox image ships), in ip(8) words
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done ;;
esac
exit 0
"""
PIPEWORK_TOOLS = ("docker", "ip", "ovs-vsctl", "grep", "cat", "basename", "cut", "head", "find",
                  "wc", "sed", "md5sum", "awk", "mkdir", "rm", "ln", "sleep", "tc", "env")


@dataclass(frozen=True)
class Box:
    id: str
    name: str
    pid: int


@pytest.fixture(autouse=True)
def _docker_host(private_dockerd: Any, monkeypatch: pytest.MonkeyPatch, home: Any) -> str:
    """DOCKER_HOST: the private dockerd; a private daemon home per test, so the daemon a
    DHCP attach starts talks to this dockerd too."""
    host: str = private_dockerd.host
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


@pytest.fixture(scope="module")
def busybox_image(private_dockerd: Any) -> Iterator[str]:
    """pipework's ``dhcp`` runs ``docker run busybox udhcpc``: a local ``busybox`` image whose
    udhcpc finds its default script (/etc/udhcpc/default.script for Debian's busybox), made
    from the test image only when no ``busybox`` tag exists, and only our tag removed."""
    exists = subprocess.run(["docker", "-H", private_dockerd.host, "image", "inspect",
                             "busybox"], capture_output=True, check=False).returncode == 0
    if exists:
        yield "busybox"
        return
    cid = private_dockerd.docker("create", "-i", "--net=none", TEST_IMAGE, "sh", "-c",
                                 "mkdir -p /etc/udhcpc && cat >/etc/udhcpc/default.script && "
                                 "chmod 755 /etc/udhcpc/default.script")
    subprocess.run(["docker", "-H", private_dockerd.host, "start", "-ai", cid],
                   input=UDHCPC_SCRIPT, text=True, check=True, capture_output=True, timeout=60)
    private_dockerd.docker("commit", "-c", 'CMD ["/bin/sleep","infinity"]', cid,
                           "busybox:latest")
    private_dockerd.docker("rm", cid)
    try:
        yield "busybox"
    finally:
        private_dockerd.docker("rmi", "busybox:latest")


@pytest.fixture(scope="module")
def host_tools() -> Iterator[dict[str, str]]:
    """PATH prefixes for pipework: ``udhcpc`` (busybox's, with the default script), and a
    PATH without busybox (for -a 6)."""
    root = Path(tempfile.mkdtemp(prefix="obtpwtools-"))
    try:
        script = root / "default.script"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        with_udhcpc = root / "udhcpc-bin"
        with_udhcpc.mkdir()
        wrapper = with_udhcpc / "udhcpc"
        wrapper.write_text(f'#!/bin/sh\nexec busybox udhcpc -s {script} "$@"\n')
        wrapper.chmod(0o755)
        no_busybox = root / "no-busybox"
        no_busybox.mkdir()
        for tool in PIPEWORK_TOOLS:
            found = shutil.which(tool)
            if found:
                (no_busybox / tool).symlink_to(found)
        yield {"udhcpc": str(with_udhcpc), "no-busybox": str(no_busybox)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def boxes(private_dockerd: Any, names: Callable[[str], str]) -> Iterator[Callable[[], Box]]:
    made: list[str] = []

    def make() -> Box:
        name = names("sb")
        made.append(name)
        # NOTE: IPv6 left on, as on a host where pipework's -a 6 is used; Docker turns it
        # off in --net=none containers by default, and pipework does not turn it back on.
        cid = private_dockerd.docker("run", "-d", "--name", name, "--network", "none",
                                     "--sysctl", "net.ipv6.conf.all.disable_ipv6=0",
                                     TEST_IMAGE)
        pid = int(private_docker.inspect(cid, private_dockerd.host)["State"]["Pid"])
        return Box(cid, name, pid)

    yield make
    remove_all(private_dockerd, made)


def remove_all(dockerd: Any, refs: list[str]) -> None:
    """Remove REFS and the udhcpc helpers pipework started in their netns."""
    helpers = subprocess.run(["docker", "-H", dockerd.host, "ps", "-aq", "--filter",
                              "ancestor=busybox"], capture_output=True, text=True,
                             check=False).stdout.split()
    if refs or helpers:
        subprocess.run(["docker", "-H", dockerd.host, "rm", "-f", *helpers, *refs],
                       capture_output=True, check=False, timeout=120)


# ----- reading a container's state -----------------------------------------------------------
_LFT = re.compile(r"\s*(valid|preferred)_lft \S+")
_ROUTE_NOISE = re.compile(r"\s+(proto \S+|metric \d+|pref \S+|expires \S+)")


def state(box: Box, ifname: str, *, mac: bool, lease: bool = True) -> dict[str, Any]:
    link = ip_in(box.pid, "-o", "link", "show", "dev", ifname)
    found = re.search(r"@if(\d+):.* mtu (\d+) .*state (\S+).*link/ether (\S+)", link)
    assert found, link
    peer_index, mtu, operstate, address = found.groups()
    addrs = []
    for line in ip_in(box.pid, "-o", "addr", "show", "dev", ifname).splitlines():
        words = _LFT.sub("", line.split(None, 2)[2].replace("\\", " ")).split()
        if not mac and words[1].startswith("fe80:"):
            continue  # link-local: derived from the (random) MAC
        if not lease and words[0] == "inet":
            words[1] = "LEASED/" + words[1].split("/")[1]
        addrs.append(" ".join(w for w in words
                              if w not in ("dynamic", "noprefixroute", "tentative", "nodad")))
    routes = []
    for family in ("-4", "-6"):
        for line in ip_in(box.pid, family, "-o", "route", "show").splitlines():
            line = _ROUTE_NOISE.sub("", line).strip()
            if line.startswith(("fe80::", "multicast", "ff00::")):
                continue
            if not lease:
                line = re.sub(r"src \S+", "src LEASED", line)
            routes.append(line)
    host_port = _host_link_name(int(peer_index))
    tag = subprocess.run(["ovs-vsctl", "get", "Port", host_port, "tag"], capture_output=True,
                         text=True, check=True).stdout.strip()
    return {"mtu": int(mtu), "operstate": operstate, "mac": address if mac else None,
            "addresses": sorted(addrs), "routes": sorted(routes), "vlan": tag,
            "host_port": host_port}


def off_the_bridge(ovsbridge: Any, bridge: str, port: str) -> None:
    """Take the removed container's port off BRIDGE (``ovsbridge cleanup``: its container is
    gone), so a second link with the same MAC never meets it on the LAN (DAD).

    NOTE: the kernel frees a removed container's netns, and so its veth, asynchronously (it
    can take many seconds on a busy machine); the port must go from the bridge regardless.
    """
    cleaned = ovsbridge("cleanup", "--bridge", bridge, "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    out = subprocess.run(["ovs-vsctl", "list-ports", bridge], capture_output=True, text=True,
                         check=True).stdout.split()
    assert port not in out, f"cleanup kept {port}: {cleaned.stdout}"


def _host_link_name(index: int) -> str:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        number, name = line.split(":")[:2]
        if int(number) == index:
            return name.strip().split("@")[0]
    raise AssertionError(f"no host interface with index {index}")


def wait_for_address(box: Box, ifname: str, family: str = "inet", timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while f" {family} " not in ip_in(box.pid, "-o", "addr", "show", "dev", ifname):
        assert time.monotonic() < deadline, f"{box.name} {ifname}: no {family} address"
        time.sleep(0.2)
    if family == "inet6":
        while "tentative" in ip_in(box.pid, "-o", "-6", "addr", "show", "dev", ifname):
            assert time.monotonic() < deadline, f"{box.name} {ifname}: DAD never ended"
            time.sleep(0.2)


# ----- the comparison ------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    before: tuple[str, ...]  # arguments between BRIDGE and GUEST (-i, -l, -a)
    after: tuple[str, ...]  # ADDRESS [MAC][@VLAN]
    path: str | None = None  # host_tools key for pipework's PATH
    dhcp: bool = False

    @property
    def ifname(self) -> str:
        return self.before[self.before.index("-i") + 1] if "-i" in self.before else "eth1"

    @property
    def fixed_mac(self) -> bool:
        mac = self.after[1].partition("@")[0] if len(self.after) > 1 else ""
        return bool(mac)


def run_both(case: Case, bridge: str, boxes: Callable[[], Box], tools: dict[str, str],
             dockerd: Any, ovsbridge: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    theirs, ours = boxes(), boxes()
    done = pipework(bridge, *case.before, theirs.name, *case.after,
                    path_prefix=tools[case.path] if case.path == "udhcpc" else None,
                    path=tools[case.path] if case.path == "no-busybox" else None)
    assert done.returncode == 0, f"real pipework failed: {done.stderr}"
    if case.dhcp:
        wait_for_address(theirs, case.ifname)
    if "-6" in case.before or "6" in case.before:
        wait_for_address(theirs, case.ifname, "inet6")
    before = state(theirs, case.ifname, mac=case.fixed_mac, lease=case.fixed_mac or not case.dhcp)
    remove_all(dockerd, [theirs.id])
    off_the_bridge(ovsbridge, bridge, before["host_port"])
    mine = ovsbridge("pipework", bridge, *case.before, ours.name, *case.after)
    assert mine.returncode == 0, f"ovsbridge pipework failed: {mine.stderr}"
    if "6" in case.before:
        wait_for_address(ours, case.ifname, "inet6")
    after = state(ours, case.ifname, mac=case.fixed_mac, lease=case.fixed_mac or not case.dhcp)
    if "-l" not in case.before:
        before.pop("host_port")
        after.pop("host_port")
    return before, after


U_TEXTS = ("web 1", "a  b\tc", "back\\slash\\t", "-n web1", " lead\ttrail ", "e\\0101\\cz")
CASES = {
    "static": Case((), ("198.51.100.10/24",)),
    "gw-in-subnet": Case((), ("198.51.100.10/24@198.51.100.1",)),
    "gw-outside-subnet": Case((), ("198.51.100.10/24@203.0.113.1",)),
    "-i": Case(("-i", "eth2"), ("198.51.100.10/24@198.51.100.1",)),
    "MAC": Case((), ("198.51.100.10/24", "02:42:c6:33:64:12")),
    "MAC@VLAN": Case((), ("198.51.100.10/24", "02:42:c6:33:64:12@20")),
    "@VLAN": Case((), ("198.51.100.10/24", "@30")),
    "0/0": Case((), ("0/0", "U:zero")),
    "-a 6": Case(("-a", "6"), ("2001:db8::10/64@2001:db8::1", "U:six"), path="no-busybox"),
    "udhcpc-f": Case((), ("udhcpc-f", "U:dh1"), path="udhcpc", dhcp=True),
    "dhcp:-f": Case((), ("dhcp:-f", "U:dh2"), dhcp=True),
    **{f"U:{text!r}": Case((), ("198.51.100.10/24", f"U:{text}")) for text in U_TEXTS},
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_result_as_the_real_pipework(name, bridge, boxes, host_tools, busybox_image,
                                          private_dockerd, dhcp_server, ovsbridge):
    need_pipework()
    case = CASES[name]
    if case.dhcp:
        dhcp_server(bridge, router="198.51.100.1")
    theirs, ours = run_both(case, bridge, boxes, host_tools, private_dockerd, ovsbridge)
    assert ours == theirs
    if case.path == "udhcpc":
        for path in Path("/var/run").glob("udhcpc.obt*.pid"):
            path.unlink()  # pipework leaves udhcpc's pid file behind with -f


def test_host_interface_name_with_l(bridge, boxes, host_tools, private_dockerd, ovsbridge,
                                    names):
    need_pipework()
    case = Case(("-l", names("hl")), ("198.51.100.10/24",))
    theirs, ours = run_both(case, bridge, boxes, host_tools, private_dockerd, ovsbridge)
    assert ours == theirs and ours["host_port"] == case.before[1]


def test_the_blog_posts_dhcp_line(bridge, busybox_image, private_dockerd, dhcp_server):
    """``pipework ovsbr0 $(docker run -d --net=none IMAGE) dhcp``, verbatim, both ways."""
    need_pipework()
    server = dhcp_server(bridge, router="198.51.100.1")
    pipework_script = need_pipework()
    results = []
    for tool in (f"/bin/sh {pipework_script}", f"{ovsbridge_cli_line()} pipework"):
        before = set(private_dockerd.docker("ps", "-aq").split())
        line = f"{tool} {bridge} $(docker run -d --net=none {TEST_IMAGE}) dhcp"
        done = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True,
                              timeout=120, check=False, env=dict(os.environ))
        made = [c for c in private_dockerd.docker("ps", "-aq").split() if c not in before]
        try:
            assert done.returncode == 0, done.stderr
            guest = next(c for c in made
                         if private_dockerd.docker("inspect", "-f", "{{.Config.Image}}", c)
                         != "busybox")
            info = private_docker.inspect(guest, private_dockerd.host)
            box = Box(info["Id"], info["Name"].lstrip("/"), int(info["State"]["Pid"]))
            wait_for_address(box, "eth1")
            seen = state(box, "eth1", mac=True, lease=True)
            leased = [lease for lease in server.leases() if lease["mac"] == seen["mac"]]
            assert leased, f"{seen['mac']} has no lease from dnsmasq"
            seen = state(box, "eth1", mac=False, lease=False)
            seen.pop("host_port")
            results.append(seen)
        finally:
            remove_all(private_dockerd, made)
    assert results[0] == results[1]


def test_route_in_the_guest(bridge, boxes, host_tools, private_dockerd, ovsbridge):
    need_pipework()
    theirs, ours = boxes(), boxes()
    args = ("add", "203.0.113.0/24", "via", "198.51.100.1")
    seen = []
    for box, run in ((theirs, lambda b: pipework(bridge, b.name, "198.51.100.10/24")),
                     (ours, lambda b: ovsbridge("pipework", bridge, b.name,
                                                "198.51.100.11/24"))):
        assert run(box).returncode == 0
    for box, run in ((theirs, lambda b: pipework("route", b.name, *args)),
                     (ours, lambda b: ovsbridge("pipework", "route", b.name, *args))):
        done = run(box)
        assert done.returncode == 0, done.stderr
        routes = ip_in(box.pid, "-o", "route", "show", "203.0.113.0/24")
        seen.append(_ROUTE_NOISE.sub("", routes).strip())
    assert seen[0] == seen[1] == "203.0.113.0/24 via 198.51.100.1 dev eth1"
    bad = ovsbridge("pipework", "route", ours.name, "add", "bogus")
    assert bad.returncode == pipework("route", theirs.name, "add", "bogus").returncode != 0


def ovsbridge_cli_line() -> str:
    return f"{sys.executable} -m ovsbridge"


def test_json_of_pipework_is_attachs(bridge, boxes, ovsbridge):
    box = boxes()
    done = ovsbridge("--json", "pipework", bridge, box.name, "198.51.100.12/24@198.51.100.1",
                     "U:j@5")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["status"], data["vlan"], data["addresses"]) == (
        "attached", 5, ["198.51.100.12/24@198.51.100.1"])
    assert ovsbridge_cli("attach", bridge, box.name, "198.51.100.13/24",
                         "--mac", "U:j@5").returncode == 2


def test_through_a_symlink_named_pipework_old_scripts_run_unchanged(
    bridge, boxes, host_tools, private_dockerd, tmp_path
):
    """``ln -s $(command -v ovsbridge) /usr/local/bin/pipework``: argv[0] decides."""
    need_pipework()
    venv_entry = Path(sys.executable).parent / "ovsbridge"  # this checkout's, not another
    entry = str(venv_entry) if venv_entry.exists() else shutil.which("ovsbridge")
    assert entry, "no ovsbridge entry point"
    link = tmp_path / "pipework"
    link.symlink_to(entry)
    case = Case(("-i", "eth3"), ("198.51.100.10/24@198.51.100.1", "U:via symlink@25"))
    theirs, ours = boxes(), boxes()
    assert pipework(bridge, *case.before, theirs.name, *case.after).returncode == 0
    before = state(theirs, "eth3", mac=True)
    remove_all(private_dockerd, [theirs.id])
    off_the_bridge(ovsbridge_cli, bridge, before["host_port"])
    done = subprocess.run([str(link), bridge, *case.before, ours.name, *case.after],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("attached: ")
    after = state(ours, "eth3", mac=True)
    before.pop("host_port")
    after.pop("host_port")
    assert after == before
    refused = subprocess.run([str(link), "br0", ours.name, "dhcp"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "Linux bridge" in refused.stderr
    waited = subprocess.run([str(link), "--wait", "-i", "lo"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert waited.returncode == 0


def test_a_missing_ovs_bridge_is_created_with_the_datapath_this_host_has(
    boxes, ovsbridge, names, request
):
    from ovsbridge.system.ovs import auto_datapath

    name = "ovs" + names("")[3:]  # pipework creates a missing bridge named ovs*
    request.addfinalizer(lambda: subprocess.run(["ovs-vsctl", "--if-exists", "del-br", name],
                                                capture_output=True, check=False))
    box = boxes()
    done = ovsbridge("pipework", name, box.name, "198.51.100.14/24")
    assert done.returncode == 0, done.stderr
    datapath = subprocess.run(["ovs-vsctl", "get", "Bridge", name, "datapath_type"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert datapath.strip('"') == auto_datapath()
    assert " 198.51.100.14/24 " in ip_in(box.pid, "-o", "addr", "show", "dev", "eth1")
    assert ovsbridge("detach", box.name).returncode == 0


def test_rule_and_tc_in_the_guest_like_pipework(bridge, boxes, ovsbridge):
    need_pipework()
    box = boxes()
    assert ovsbridge("pipework", bridge, box.name, "198.51.100.15/24").returncode == 0
    for argv in (("rule", box.name, "show"), ("tc", box.name, "qdisc", "show", "dev", "eth1")):
        theirs, ours = pipework(*argv), ovsbridge("pipework", *argv)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
        assert ours.stdout
    added = ovsbridge("pipework", "rule", box.name, "add", "from", "198.51.100.15",
                      "table", "100")
    assert added.returncode == 0, added.stderr
    assert "lookup 100" in ip_in(box.pid, "rule", "show")


def test_a_pid_guest(bridge, ovsbridge):
    """pipework takes a pid where Docker knows no such container."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        host = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{holder.pid}/ns/net").st_ino == host:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        done = ovsbridge("--json", "pipework", bridge, str(holder.pid), "198.51.100.16/24")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["container"] == f"pid:{holder.pid}"
        assert " 198.51.100.16/24 " in ip_in(holder.pid, "-o", "addr", "show", "dev", "eth1")
        assert ovsbridge("detach", f"pid:{holder.pid}").returncode == 0
    finally:
        holder.kill()
        holder.wait()
