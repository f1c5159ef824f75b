"""scripts/bench.py's figures and table: medians, sums, ratios, goals and n/a rows (pure)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ovsbridge_bench", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def test_figures_combine_as_their_row_says(bench: ModuleType) -> None:
    assert bench.Measure("r", "t", samples=[3, 1, 2, 10]).figure() == 2.5
    assert bench.Measure("r", "t", how="sum", samples=[1, 2, 3]).figure() == 6
    assert bench.Measure("r", "t", how="value", samples=[7]).figure() == 7
    assert bench.Measure("r", "t", samples=[1], skipped="no daemon").figure() is None
    assert bench.Measure("r", "t").figure() is None


def test_figures_and_ratios_format(bench: ModuleType) -> None:
    assert bench.format_figure(0.0614, "s") == "61 ms"
    assert bench.format_figure(12.345, "s") == "12.35 s"
    assert bench.format_figure(37.26, "MB") == "37.3 MB"
    assert bench.format_figure(None, "s") == "n/a"
    assert bench.format_ratio(0.83, "ovs-docker") == "0.83x ovs-docker (1.2x faster)"
    assert bench.format_ratio(4.0, "ovs-docker") == "4.00x ovs-docker"
    assert bench.format_ratio(0.0123, "blog loop") == "0.0123x blog loop (81x faster)"
    assert bench.format_ratio(1.02, "before", better=None) == "1.02x before"


def test_ratio_is_ours_over_peer_with_goal_verdict(bench: ModuleType) -> None:
    ours = bench.Measure("single", "ovsbridge", samples=[0.05, 0.06, 0.07])
    peer = bench.Measure("single", "ovs-docker", samples=[0.07, 0.08, 0.09])
    by_key = {m.key: m for m in (ours, peer)}
    met = bench.Ratio(ours.key, peer.key, "ovs-docker", goal=1.0)
    assert bench.ratio_value(by_key, met) == pytest.approx(0.75)
    assert bench.ratio_text(by_key, met).endswith("[goal <= 1x: ok]")
    missed = bench.Ratio(peer.key, ours.key, "ovsbridge", goal=1.0)
    assert "MISSED" in bench.ratio_text(by_key, missed)
    unmeasured = bench.Ratio(ours.key, "single/pipework", "pipework", goal=1.0)
    assert bench.goals_line([ours, peer], [met, missed, unmeasured]) == (
        "goals: 1 of 3 met (1 missed, 1 not measured)")
    assert bench.goals_line([ours, peer], [bench.Ratio(ours.key, peer.key, "x")]) == (
        "goals: none judged")


def test_table_shows_na_with_reason_and_ratio_on_our_line(bench: ModuleType) -> None:
    ours = bench.Measure("single", "ovsbridge", samples=[0.1, 0.1])
    peer = bench.Measure("single", "ovs-docker", samples=[0.2, 0.2])
    gone = bench.Measure("single", "pipework", skipped="x" * 200)
    other = bench.Measure("cleanup", "ovsbridge cleanup", how="value", samples=[1.5])
    ratios = [bench.Ratio(ours.key, peer.key, "ovs-docker"),
              bench.Ratio(ours.key, gone.key, "pipework")]
    peer.failures.append("obtc1 eth1: expected 198.51.100.5, found nothing")
    lines = bench.render_table([ours, peer, gone, other], ratios).splitlines()
    assert "1 failed sample(s) left out, the first: obtc1 eth1" in lines[2]
    assert lines[0].split() == ["ROW", "TOOL", "N", "FIGURE", "RATIO"]
    assert "0.50x ovs-docker (2.0x faster); vs pipework: n/a" in lines[1]
    assert lines[1].startswith("single ") and lines[2].startswith(" ")
    assert "n/a (xxx" in lines[3] and "..." in lines[3] and len(lines[3]) < 200
    assert lines[4] == "" and lines[5].startswith("cleanup")
    report = bench.report_json([ours, peer], ratios[:1], {"quick": True})
    assert report["measures"][0]["figure"] == 0.1
    assert report["ratios"][0]["value"] == pytest.approx(0.5)


def test_only_rejects_unknown_rows(bench: ModuleType) -> None:
    assert bench.parse_args(["--only", "single,cleanup"]).rows == ["single", "cleanup"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "singel"])


def test_a_failed_tool_fails_the_run_a_missing_feature_does_not(bench: ModuleType) -> None:
    missing = bench.Measure("single", "pipework", skipped="/x/pipework is absent")
    assert not bench.any_failed([missing])
    assert bench.any_failed([missing, bench.Measure("bulk", "o", skipped="failed (exit 1): x")])
    flaky = bench.Measure("single", "o", samples=[0.1], failures=["eth1: found nothing"])
    assert bench.any_failed([flaky])
