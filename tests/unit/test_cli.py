"""CLI argument handling with click's CliRunner (no lab state is touched)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ovsbridge.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("argv", [
    ["attach", "br0", "web1", "198.51.100.5/24"],
    ["detach", "web1"],
    ["ps"],
])
def test_non_root_gets_exit_5_and_one_line_before_anything(runner: CliRunner, argv: list[str],
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import ovsbridge.system.backend as backend

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(backend, "RealBackend", None)  # touching the machine would crash
    result = runner.invoke(main, argv)
    assert result.exit_code == 5
    assert result.output.strip().startswith("error: ovsbridge must run as root")
    assert len(result.output.strip().splitlines()) == 1


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "ovsbridge" in result.output


def test_help_lists_exit_codes_and_commands(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for word in ("attach", "detach", "ps", "Exit codes", "5  environment"):
        assert word in result.output


def test_usage_error_is_one_line_exit_2(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root, wherever the tests run
    result = runner.invoke(main, ["attach", "br0"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: attach needs BRIDGE, at least one GUEST and ADDRESS; hint: e.g. ovsbridge "
        "attach ovsbr0 web1 dhcp (see 'ovsbridge attach --help')"]


def test_json_usage_error_is_json(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root, wherever the tests run
    result = runner.invoke(main, ["--json", "attach", "br0", "web1", "nope"])
    assert result.exit_code == 2
    doc = json.loads(result.output)
    assert doc["error"] == "bad-input" and doc["exit_code"] == 2
