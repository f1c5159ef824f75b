"""A DHCP server's values are data (issue 9): hostname, domain, search list and DNS servers are
validated before they reach resolv.conf, a DHCP packet or the log. A newline or control
character in a domain never adds a line to resolv.conf."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbridge import dnsname
from ovsbridge.errors import BadInput
from ovsbridge.system import dhcp
from ovsbridge.system.dhcp import Lease, lease_from_ack, render_resolv_conf

from .dhcp_fakes import make_lease
from .test_dhcp_messages import ACK_OPTIONS, IDENT, decode, frame, reply

HOSTILE_DOMAINS = [
    "lab.test\nnameserver 198.51.100.66",
    "lab.test\rnameserver 198.51.100.66",
    "lab.test\x00evil",
    "lab.test nameserver 198.51.100.66",
    "lab..test",
    "-lab.test",
    "lab-.test",
    "lab.test..",
    "a" * 64 + ".test",
    "l\u00e4b.test",
    "lab.123",
    "lab_test.example",
    "",
    ".",
]


@pytest.mark.parametrize("domain", HOSTILE_DOMAINS)
def test_hostile_domain_from_the_server_is_dropped_and_logged_escaped(
    domain: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {**ACK_OPTIONS, "domain_name": domain}
    with caplog.at_level(logging.WARNING, logger="ovsbridge.system.dhcp"):
        lease = lease_from_ack(decode(frame(reply(5, options))), IDENT, sent_at=0.0)
    assert lease.domain is None
    for record in caplog.records:
        assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
    text = render_resolv_conf("nameserver 127.0.0.11\noptions ndots:0\n", lease)
    assert "198.51.100.66" not in text and "evil" not in text
    words = [line.split()[0] for line in text.splitlines() if not line.startswith("#")]
    assert sorted(words) == ["nameserver", "nameserver", "options"]


def test_a_valid_domain_is_kept_in_lower_case_without_its_trailing_dot() -> None:
    options = {**ACK_OPTIONS, "domain_name": "Lab.Example.TEST."}
    lease = lease_from_ack(decode(frame(reply(5, options))), IDENT, sent_at=0.0)
    assert lease.domain == "lab.example.test"


def test_non_unicast_name_servers_and_router_are_dropped() -> None:
    options = {**ACK_OPTIONS, "name_server": ["0.0.0.0", "203.0.113.53", "255.255.255.255",
                                              "224.0.0.1", "203.0.113.53", "203.0.113.54"],
               "router": ["255.255.255.255"]}
    lease = lease_from_ack(decode(frame(reply(5, options))), IDENT, sent_at=0.0)
    assert lease.dns == ("203.0.113.53", "203.0.113.54")
    assert lease.router is None


def test_resolv_conf_never_gets_a_line_from_a_lease_made_by_hand() -> None:
    """A Lease can be built anywhere (a state file, a request): the writer checks again."""
    lease = replace(make_lease(), domain="x.test\nnameserver 198.51.100.66",
                    dns=("203.0.113.1\nsearch evil", "203.0.113.2", "fe80::1", "2001:db8::53"))
    text = render_resolv_conf("", lease)
    assert [line for line in text.splitlines() if not line.startswith("# ovsbridge")] == [
        "nameserver 203.0.113.2", "nameserver 2001:db8::53"]


def test_write_resolv_conf_leaves_the_file_alone_when_nothing_valid_is_left(tmp_path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.11\n")
    lease = replace(make_lease(), domain="bad\ndomain", dns=("not-an-ip",))
    dhcp.write_resolv_conf(str(path), lease)
    assert path.read_text() == "nameserver 127.0.0.11\n"


def test_names_longer_than_253_characters_are_not_domains() -> None:
    assert dnsname.clean_domain(".".join(["abcdefgh"] * 28)) is not None  # 251
    assert dnsname.clean_domain(".".join(["abcdefgh"] * 40)) is None  # 359


def test_search_list_limits_and_repeats() -> None:
    many = [f"d{i}.test" for i in range(10)]
    assert dnsname.clean_search(many + ["d0.test", "bad\n"]) == tuple(many[:6])
    long = ["a" * 60 + f".{i}x.test" for i in range(6)]
    cleaned = dnsname.clean_search(long)
    assert len("search " + " ".join(cleaned)) <= 256 and cleaned == tuple(long[: len(cleaned)])


@pytest.mark.parametrize("record_change", [
    {"domain": "x.test\nnameserver 198.51.100.66"},
    {"dns": ["203.0.113.1\nsearch evil"]},
    {"hostname": "web1\nevil"},
])
def test_a_lease_record_with_hostile_values_loses_them(record_change: dict) -> None:
    record = {**make_lease().to_dict(), **record_change}
    lease = Lease.from_dict(record)
    for key in record_change:
        value = getattr(lease, key)
        assert not value, (key, value)


@pytest.mark.parametrize("record_change", [
    {"lease_time": "120"}, {"lease_time": True}, {"lease_time": -1}, {"obtained_at": "now"},
    {"obtained_at": float("nan")}, {"address": ["203.0.113.5/24"]}, {"mac": "zz"},
    {"client_id": "not hex"}, {"dns": "203.0.113.1"}, {"router": 7}, {"server_mac": 5},
])
def test_a_lease_record_of_wrong_types_is_refused(record_change: dict) -> None:
    with pytest.raises(BadInput, match="malformed DHCP lease record"):
        Lease.from_dict({**make_lease().to_dict(), **record_change})


@pytest.mark.parametrize("hostname", ["web1\n", "-web", "a" * 64, "web 1", "web_1", "wéb"])
def test_hostile_hostname_is_refused_before_anything_is_sent(hostname: str) -> None:
    with pytest.raises(BadInput, match="not a valid hostname"):
        asyncio.run(dhcp.acquire_async("/nonexistent/netns", "eth1", mac="02:00:00:00:00:01",
                                       hostname=hostname, client_id=b"\x00x", timeout=1))


def test_hostname_for_a_container_name_is_always_valid() -> None:
    for name in ("web1", "My_App.1", "---", "x" * 100, "ünï"):
        got = dhcp.hostname_for(name)
        assert got is None or dnsname.is_hostname(got)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=80), st.lists(st.text(max_size=40), max_size=6))
def test_nothing_a_server_sends_adds_a_line_to_resolv_conf(domain: str, dns: list[str]) -> None:
    lease = replace(make_lease(), domain=domain, dns=tuple(dns))
    lines = render_resolv_conf("options ndots:0\n", lease).splitlines()
    assert "options ndots:0" in lines
    for line in lines:
        if line.startswith("# ovsbridge") or line == "options ndots:0":
            assert line.isprintable()
            continue
        word, _, value = line.partition(" ")
        assert word in ("search", "nameserver") and value.isprintable() and " " not in value
        if word == "search":
            assert dnsname.is_domain(value)
        else:
            assert dnsname.clean_nameserver(value) == value


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=300))
def test_clean_domain_returns_a_valid_name_or_none(text: str) -> None:
    got = dnsname.clean_domain(text)
    assert got is None or (dnsname.is_domain(got) and len(got) <= 253 and got.isascii())

