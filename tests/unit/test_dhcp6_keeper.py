"""The lease keeper with DHCPv6 leases: held next to a DHCPv4 lease on the same interface,
renewed, persisted and resumed (a REBIND after a restart), both released on drop."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path

from ovsbridge.daemon.leases import HoldOptions, entry_key, lease_from_record
from ovsbridge.system.dhcp6 import Lease6

from .dhcp_fakes import make_guest, make_lease
from .test_dhcp_keeper import Rig


def make_lease6(obtained_at: float) -> Lease6:
    return Lease6(
        ip=IPv6Address("2001:db8:1::141"), preferred=120, valid=120, t1=60, t2=96,
        iaid=7, client_duid="000300010200000000" + "01", server_duid="0001000132a1ec38",
        obtained_at=obtained_at, mac="02:00:00:00:00:01", dns=("2001:db8:1::1",),
        search=("v6.lab.test",),
    )


def test_v4_and_v6_leases_live_side_by_side_and_resume(tmp_path: Path) -> None:
    # NOTE: FakeClock jumps to the end of every sleep, so two entries that sleep in turn
    # push each other past expiry; the renewal is shown with the DHCPv6 entry alone.
    async def scenario() -> None:
        rig = Rig(tmp_path)
        seen: list[tuple[int, str]] = []

        def record(entry, event: str) -> None:
            seen.append((entry.family, event))

        rig.keeper.on_change = record
        v6 = make_lease6(rig.clock.now())
        await rig.keeper.hold(make_guest(), "eth1", v6, HoldOptions())
        await rig.until(lambda: (6, "renewed") in seen)
        await rig.keeper.close()
        [saved] = rig.files()
        renewed = lease_from_record(saved["lease"])
        assert isinstance(renewed, Lease6) and renewed.ip == v6.ip
        assert renewed.obtained_at > v6.obtained_at  # the renewal was persisted

        both = rig.new_keeper()
        await both.hold(make_guest(), "eth1", make_lease(obtained_at=rig.clock.now()),
                        HoldOptions())
        await both.hold(make_guest(), "eth1", replace(renewed, obtained_at=rig.clock.now()),
                        HoldOptions())
        assert sorted(s["family"] for s in both.status()) == [4, 6]
        assert set(both.entries) == {entry_key("c0ffee", "eth1"),
                                     entry_key("c0ffee", "eth1", 6)}
        await both.close()

        again = rig.new_keeper()
        again.on_change = record
        assert await again.resume() == 2
        await rig.until(lambda: {(4, "rebooted"), (6, "rebooted")} <= set(seen))
        await again.drop("c0ffee", "eth1", release=True)
        assert sorted(type(x).__name__ for x in rig.dhcp.released) == ["Lease", "Lease6"]
        assert again.status() == [] and rig.files() == []
        await again.close()

    asyncio.run(scenario())
