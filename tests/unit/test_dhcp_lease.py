"""The Lease value: JSON round trip, timers, and the container resolv.conf it produces."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ovsbridge.errors import BadInput
from ovsbridge.system.dhcp import Lease, render_resolv_conf, write_resolv_conf

from .dhcp_fakes import make_lease


def test_round_trips_through_json() -> None:
    lease = make_lease()
    again = Lease.from_dict(json.loads(json.dumps(lease.to_dict())))
    assert again == lease
    assert lease.to_dict()["address"] == "203.0.113.10/24"
    assert lease.to_dict()["client_id"] == "00776562"


def test_older_records_without_server_mac_still_load() -> None:
    data = make_lease().to_dict()
    del data["server_mac"]
    assert Lease.from_dict(data).server_mac is None


@pytest.mark.parametrize("broken", ["address", "server_id", "lease_time"])
def test_malformed_record_is_bad_input(broken: str) -> None:
    data = make_lease().to_dict()
    data[broken] = "nonsense"
    with pytest.raises(BadInput):
        Lease.from_dict(data)


def test_timers_and_remaining_lifetime() -> None:
    lease = make_lease(obtained_at=1000.0)
    assert (lease.renew_at, lease.rebind_at, lease.expires_at) == (1060.0, 1105.0, 1120.0)
    assert lease.remaining(now=1100.0) == 20
    assert lease.remaining(now=2000.0) == 0 and lease.expired(now=1120.0)


def test_resolv_conf_keeps_options_and_replaces_servers() -> None:
    old = "# made by docker\nnameserver 198.51.100.253\nsearch old.example\noptions ndots:2\n"
    new = render_resolv_conf(old, make_lease(dns=("203.0.113.53", "203.0.113.54")))
    lines = new.splitlines()
    assert "nameserver 198.51.100.253" not in new and "search old.example" not in new
    assert "search lab.test" in lines and "options ndots:2" in lines
    assert [ln for ln in lines if ln.startswith("nameserver")] == [
        "nameserver 203.0.113.53", "nameserver 203.0.113.54"]
    assert render_resolv_conf(new, make_lease(dns=("203.0.113.53", "203.0.113.54"))) == new


def test_write_resolv_conf_rewrites_the_same_inode(tmp_path: Path) -> None:
    """Docker bind-mounts ResolvConfPath: the file must change in place, not be renamed over."""
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 198.51.100.253\n" + "# long comment line\n" * 20)
    inode = os.stat(path).st_ino

    write_resolv_conf(str(path), make_lease())

    assert os.stat(path).st_ino == inode
    text = path.read_text()
    assert "nameserver 203.0.113.1" in text and "198.51.100.253" not in text
    assert text.endswith("\n") and text.count("# long comment line") == 20


def test_write_resolv_conf_without_dns_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 198.51.100.253\n")
    write_resolv_conf(str(path), make_lease(dns=(), domain=None))
    assert path.read_text() == "nameserver 198.51.100.253\n"


def test_write_resolv_conf_refuses_the_hosts_file_even_through_a_symlink(tmp_path: Path) -> None:
    before = Path("/etc/resolv.conf").read_bytes()
    link = tmp_path / "sneaky.conf"
    link.symlink_to("/etc/resolv.conf")
    for path in ("/etc/resolv.conf", str(link), "/etc/../etc/resolv.conf"):
        with pytest.raises(BadInput, match=r"host's resolv\.conf"):
            write_resolv_conf(path, make_lease())
    assert Path("/etc/resolv.conf").read_bytes() == before
