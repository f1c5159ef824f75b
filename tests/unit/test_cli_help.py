"""Every command's --help shows an example, and the new commands are registered."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ovsbridge.cli import LAZY_COMMANDS, main


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_help_has_an_example(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_pipework_adopt_doctor_completion_are_commands() -> None:
    assert {"pipework", "adopt", "doctor", "completion"} <= set(LAZY_COMMANDS)


def test_pipework_usage_error_is_exit_2(monkeypatch) -> None:
    # NOTE: as every command, pipework checks for root first (exit 5); the refusal of its
    # argv comes next and touches nothing, so root is only pretended here (the unit tests
    # also run as nobody)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    result = CliRunner().invoke(main, ["pipework", "--direct-phys", "eth0", "web1", "dhcp"])
    assert result.exit_code == 2, result.output
    assert "--direct-phys" in result.output
