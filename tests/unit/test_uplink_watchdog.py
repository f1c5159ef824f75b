"""The rollback watchdog's state machine, driven by a scripted fake socket server.

The real detached process (SIGKILLed CLI, SIGHUP, SIGTERM, timeout) is proven on the
simulated host in tests/integration/test_setup_bridge.py.
"""

from __future__ import annotations

import json
import os
import stat
import time
from typing import Any

import pytest

from ovsbridge.daemon import uplink_watchdog as wd_main
from ovsbridge.system import watchdog as wd
from ovsbridge.system.hostnet import Address, LinkInfo, LinkState, Route

SESSION, OTHER = 10, 11


@pytest.fixture(autouse=True)
def _private_run_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", str(tmp_path / "run"))


def armed(timeout: float = 60.0, **kw: Any) -> wd.Armed:
    before = LinkState(
        link=LinkInfo(2, "eth0", "02:0b:00:00:00:01", 1500, True, "veth"),
        addresses=(Address(4, "198.51.100.10", 24),),
        routes=(Route(4, 254, "0.0.0.0/0", "eth0", gateway="198.51.100.1"),),
    )
    return wd.Armed(
        bridge="ovsbr0",
        uplink="eth0",
        db=None,
        before=before,
        bridge_existed=False,
        confirm_timeout=timeout,
        **kw,
    )


class Script:
    """A LineServer stand-in: each poll() hands out the next batch of messages."""

    def __init__(self, *batches: list[tuple[int, dict[str, Any] | None]]) -> None:
        self.batches = list(batches)
        self.sent: list[tuple[int, dict[str, Any]]] = []

    def poll(self, timeout: float) -> list[tuple[int, dict[str, Any] | None]]:
        if self.batches:
            return self.batches.pop(0)
        time.sleep(min(timeout, 0.01))
        return []

    def send(self, cid: int, message: dict[str, Any]) -> bool:
        self.sent.append((cid, message))
        return True


def loop_for(state: wd.Armed) -> tuple[wd_main._Loop, list[str]]:
    restored: list[str] = []

    def restore(a: wd.Armed) -> list[str]:
        restored.append(a.bridge)
        return []

    return wd_main._Loop(state, wd.watchdog_files(state.bridge), restore), restored


def outcomes(server: Script, cid: int) -> list[dict[str, Any]]:
    return [m for c, m in server.sent if c == cid and "outcome" in m]


def test_cli_killed_while_applying_rolls_back_at_once() -> None:
    loop, restored = loop_for(armed())
    server = Script([(SESSION, {"op": "session"})], [(SESSION, None)])
    outcome = loop.run(server)  # type: ignore[arg-type]
    assert outcome.outcome == wd.ROLLED_BACK and "stopped before it finished" in outcome.reason
    assert restored == ["ovsbr0"]


def test_cli_gone_after_apply_keeps_waiting_for_confirm() -> None:
    loop, restored = loop_for(armed())
    server = Script(
        [(SESSION, {"op": "session"})],
        [(SESSION, {"op": "applied"})],
        [(SESSION, None)],
        [(OTHER, {"op": "confirm"})],
    )
    outcome = loop.run(server)  # type: ignore[arg-type]
    assert outcome.confirmed and restored == []
    assert outcomes(server, OTHER) == [
        {"outcome": "confirmed", "reason": "confirmed", "problems": []}
    ]


def test_confirm_while_applying_is_refused() -> None:
    loop, _ = loop_for(armed())
    server = Script(
        [(SESSION, {"op": "session"})],
        [(OTHER, {"op": "confirm"})],
        [(SESSION, {"op": "applied"})],
        [(SESSION, {"op": "confirm"})],
    )
    outcome = loop.run(server)  # type: ignore[arg-type]
    assert outcome.confirmed
    refused = [m for c, m in server.sent if c == OTHER]
    assert refused == [{"ok": False, "error": "setup-bridge is still applying"}]


def test_no_confirmation_rolls_back_at_the_deadline() -> None:
    loop, restored = loop_for(armed(timeout=0.2))
    server = Script([(SESSION, {"op": "session"})], [(SESSION, {"op": "applied"})])
    started = time.monotonic()
    outcome = loop.run(server)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.2
    assert outcome.outcome == wd.ROLLED_BACK
    assert outcome.reason == "no confirmation within 0.2 s"
    assert restored == ["ovsbr0"]
    assert outcomes(server, SESSION)[0]["outcome"] == "rolled-back"


def test_rollback_request_and_sigterm() -> None:
    loop, restored = loop_for(armed())
    server = Script(
        [(SESSION, {"op": "session"})], [(SESSION, {"op": "rollback", "reason": "gateway silent"})]
    )
    assert loop.run(server).reason == "gateway silent"  # type: ignore[arg-type]
    loop, restored = loop_for(armed())
    loop.stop_requested = True
    assert "SIGTERM" in loop.run(Script()).reason  # type: ignore[arg-type]
    assert restored == ["ovsbr0"]


def test_failed_restore_is_reported() -> None:
    def broken(_: wd.Armed) -> list[str]:
        raise RuntimeError("netlink went away")

    state = armed()
    loop = wd_main._Loop(state, wd.watchdog_files(state.bridge), broken)
    outcome = loop.run(Script([(SESSION, {"op": "rollback"})]))  # type: ignore[arg-type]
    assert outcome.outcome == wd.ROLLBACK_INCOMPLETE
    assert outcome.problems == ("RuntimeError: netlink went away",)


def test_update_saves_the_dhcp_hand_over(tmp_path: Any) -> None:
    state = armed()
    files = wd.watchdog_files(state.bridge)
    state.save(files.state)
    loop, _ = loop_for(state)
    lease = {"address": "198.51.100.150/24"}
    server = Script(
        [(SESSION, {"op": "update", "dhcp": {"uplink_lease": lease}})],
        [(SESSION, {"op": "rollback"})],
    )
    loop.run(server)  # type: ignore[arg-type]
    assert wd.Armed.load(files.state).dhcp == {"uplink_lease": lease}


def test_armed_state_round_trip_and_file_mode() -> None:
    state = armed(dhcp={"bridge": "ovsbr0"})
    files = wd.watchdog_files("ovsbr0")
    state.save(files.state)
    assert stat.S_IMODE(os.stat(files.state).st_mode) == 0o600
    assert wd.Armed.load(files.state) == state
    with open(files.state) as fh:
        json.load(fh)


def test_no_pending_setup_to_confirm() -> None:
    with pytest.raises(wd.NotFound, match="no setup-bridge is waiting"):
        wd.confirm_pending()
