"""The DHCPv6 wire format on packets captured from dnsmasq (tests/unit/data/README.md),
plus the RA parser and the retransmission timer of RFC 8415 15."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from ovsbridge.system import dhcp6, slaac
from ovsbridge.system.dhcp import LeaseRefused

DATA = json.loads((Path(__file__).parent / "data" / "dhcp6_dnsmasq.json").read_text())
PACKETS = [(p["sport"], p["dport"], bytes.fromhex(p["hex"])) for p in DATA["packets"]]
DHCP = [dhcp6.decode(raw) for s, d, raw in PACKETS if s or d]
RAS = [raw for s, d, raw in PACKETS if not (s or d)]
IDENT = dhcp6.Identity(DATA["client_mac"], dhcp6.iaid_for("eth1"))


def of_type(mtype: int) -> list[dhcp6.Message]:
    return [m for m in DHCP if m.mtype == mtype]


def test_every_captured_message_round_trips_byte_for_byte() -> None:
    raw = [raw for s, d, raw in PACKETS if s or d]
    assert [m.name for m in DHCP] == ["SOLICIT", "ADVERTISE", "REQUEST", "REPLY", "RENEW",
                                      "REPLY", "RELEASE", "REPLY"]
    for msg, data in zip(DHCP, raw, strict=True):
        assert dhcp6.encode(msg) == data


def test_advertise_from_dnsmasq_offers_an_address_in_the_range_with_dns() -> None:
    [adv] = of_type(dhcp6.ADVERTISE)
    assert adv.get(dhcp6.OPT_CLIENTID) == dhcp6.duid_ll(DATA["client_mac"])
    ia = dhcp6.decode_ia_na(adv.get(dhcp6.OPT_IA_NA) or b"")
    assert ia.iaid == IDENT.iaid and ia.t1 and ia.t2
    [addr] = ia.addresses
    assert IPv6Address("2001:db8:1::100") <= addr.address <= IPv6Address("2001:db8:1::1ff")
    assert dhcp6.decode_dns_servers(adv.get(dhcp6.OPT_DNS_SERVERS) or b"") == ("2001:db8:1::1",)
    assert dhcp6.decode_domain_list(adv.get(dhcp6.OPT_DOMAIN_LIST) or b"") == ("v6.lab.test",)


def test_reply_becomes_the_lease_and_our_messages_echo_the_server() -> None:
    request, reply = of_type(dhcp6.REQUEST)[0], of_type(dhcp6.REPLY)[0]
    assert request.xid == reply.xid
    lease = dhcp6.lease_from_reply(reply, IDENT, 1000.0, "fe80::1")
    assert str(lease.ip) == DATA["lease_address"]
    assert lease.valid == 120 and 0 < lease.t1 < lease.t2 < lease.valid
    assert (lease.renew_at, lease.expires_at) == (1000.0 + lease.t1, 1120.0)
    assert request.get(dhcp6.OPT_SERVERID) == reply.get(dhcp6.OPT_SERVERID)
    assert lease.server_duid == (reply.get(dhcp6.OPT_SERVERID) or b"").hex()
    again = dhcp6.Lease6.from_dict(json.loads(json.dumps(lease.to_dict())))
    assert again == lease and dhcp6.is_lease6(lease.to_dict())
    renew = of_type(dhcp6.RENEW)[0]
    assert dhcp6.decode_ia_na(renew.get(dhcp6.OPT_IA_NA) or b"").addresses[0].address == lease.ip


def test_messages_we_build_match_what_we_sent() -> None:
    solicit = of_type(dhcp6.SOLICIT)[0]
    elapsed = int.from_bytes(solicit.get(dhcp6.OPT_ELAPSED_TIME) or b"", "big")
    built = dhcp6.build(dhcp6.SOLICIT, IDENT, solicit.xid, elapsed_cs=elapsed)
    assert dhcp6.encode(built) == dhcp6.encode(solicit)


def test_refusals_raise_lease_refused() -> None:
    reply = of_type(dhcp6.REPLY)[0]
    no_binding = dhcp6.Message(dhcp6.REPLY, reply.xid, (
        *[o for o in reply.options if o[0] != dhcp6.OPT_IA_NA],
        (dhcp6.OPT_IA_NA, dhcp6.encode_ia_na(dhcp6.IaNa(IDENT.iaid, 0, 0)) + b"\x00\x0d\x00\x02"
         + b"\x00\x03"),
    ))
    with pytest.raises(LeaseRefused, match="status 3"):
        dhcp6.lease_from_reply(no_binding, IDENT, 0.0)
    with pytest.raises(LeaseRefused, match="no IA_NA"):
        dhcp6.lease_from_reply(reply, dhcp6.Identity(IDENT.mac, IDENT.iaid + 1), 0.0)


@pytest.mark.parametrize("cut", [1, 3, 6, 9])
def test_truncated_messages_are_malformed(cut: int) -> None:
    raw = dhcp6.encode(of_type(dhcp6.REPLY)[0])
    with pytest.raises(dhcp6.Malformed):
        dhcp6.decode(raw[:cut] if cut < 4 else raw[: len(raw) - cut])


def test_dnsmasq_ra_carries_rdnss_dnssl_and_the_managed_flag() -> None:
    ra = slaac.parse_ra(RAS[0], "fe80::1")
    assert ra is not None and ra.managed and ra.lifetime > 0
    assert ra.dns == ("2001:db8:1::1",) and ra.search == ("v6.lab.test",)


def test_retransmission_timer_doubles_within_rand_and_caps() -> None:
    rts = [rt for _, rt in zip(range(12), dhcp6.retransmissions(1.0, 30.0), strict=False)]
    assert 0.9 <= rts[0] <= 1.1 and all(rt <= 33.0 for rt in rts) and rts[-1] >= 27.0
    first = next(dhcp6.retransmissions(1.0, 3600.0, first_positive=True))
    assert 1.0 <= first <= 1.1
