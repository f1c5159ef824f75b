"""The thin client (ovsbridge.client): which command lines a daemon may run, and how its
answer stream becomes our stdout, stderr and exit code."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from ovsbridge import client


@pytest.fixture
def piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.os, "isatty", lambda fd: False)
    monkeypatch.delenv("OVSBRIDGE_NO_DAEMON", raising=False)
    monkeypatch.delenv("_OVSBRIDGE_COMPLETE", raising=False)
    monkeypatch.setattr(sys, "argv", ["ovsbridge"])


@pytest.mark.parametrize("argv", [
    ["attach", "ovsbr0", "web1", "dhcp"],
    ["attach", "ovsbr0", "a", "b", "198.51.100.10-11/24", "--json"],
    ["detach", "web1"],
    ["ps", "--format", "json"],
])
def test_a_script_s_hot_commands_are_served(piped: None, argv: list[str]) -> None:
    assert client.servable(argv)


@pytest.mark.parametrize("argv", [
    [], ["--json", "ps"], ["-v", "attach", "ovsbr0", "web1", "dhcp"], ["cleanup"],
    ["attach", "--help"], ["attach", "ovsbr0", "-h"], ["detach", "web1", "--no-daemon"],
    ["attach", "ovsbr0", "--from-file", "-"], ["attach", "ovsbr0", "--from-file=x"],
    ["setup-bridge", "eth0"], ["daemon", "status"],
])
def test_everything_else_runs_the_full_cli_here(piped: None, argv: list[str]) -> None:
    assert not client.servable(argv)


def test_a_terminal_no_daemon_env_or_the_pipework_name_run_here(
        piped: None, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["ps"]
    monkeypatch.setenv("OVSBRIDGE_NO_DAEMON", "yes")
    assert not client.servable(argv)
    monkeypatch.delenv("OVSBRIDGE_NO_DAEMON")
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/pipework"])
    assert not client.servable(argv)
    monkeypatch.setattr(sys, "argv", ["ovsbridge"])
    monkeypatch.setattr(client.os, "isatty", lambda fd: fd == 1)
    assert not client.servable(argv)
    monkeypatch.setattr(client.os, "isatty", lambda fd: fd == 2)  # `out=$(ovsbridge ps)`
    assert client.servable(argv)


def relay(lines: list[dict], monkeypatch: pytest.MonkeyPatch) -> tuple[int | None, str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    stream = io.BytesIO(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    code = client._relay(stream, "attach")
    return code, out.getvalue(), err.getvalue()


def test_the_stream_becomes_stdout_stderr_and_the_exit_code(
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = relay([{"progress": {"stdout": "attached: a\n"}},
                            {"progress": {"stderr": "failed: b\n"}},
                            {"progress": {"stdout": "attached 1 of 2, 1 failed\n"}},
                            {"ok": True, "result": {"exit": 1}}], monkeypatch)
    assert (code, out, err) == (1, "attached: a\nattached 1 of 2, 1 failed\n", "failed: b\n")


@pytest.mark.parametrize("error", [
    {"error": "wrong-daemon", "message": "this daemon uses Docker at unix:///x"},
    {"error": "bad-input", "message": "unknown daemon op 'cli'"},  # an older daemon
])
def test_a_daemon_that_cannot_serve_us_means_run_it_here(
        monkeypatch: pytest.MonkeyPatch, error: dict) -> None:
    assert relay([{"ok": False, "error": error}], monkeypatch) == (None, "", "")


def test_a_daemon_that_stops_midway_is_exit_1_and_never_a_rerun(
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = relay([{"progress": {"stdout": "attached: a\n"}}], monkeypatch)
    assert code == 1 and out == "attached: a\n"
    assert err.startswith("error: the ovsbridge daemon stopped while running 'attach'; hint:")
    # garbage from the daemon: the same
    code, _, err = relay([], monkeypatch)
    assert code == 1 and "stopped while running" in err


def test_no_daemon_socket_means_run_it_here(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", str(tmp_path))
    assert client.run_served(["ps"]) is None


def test_the_client_imports_neither_click_nor_dataclasses() -> None:
    code = ("import sys, ovsbridge.client; "
            "print(sorted(m for m in ('click', 'dataclasses', 'typing_extensions', 'rich', "
            "'pyroute2', 'docker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_reader_that_goes_away_does_not_turn_the_outcome_into_a_traceback() -> None:
    # `ovsbridge ps | head -1`: the rest of stdout goes nowhere, stderr and the exit code stay
    code = (
        "import io, json, os, sys\n"
        "from ovsbridge import client\n"
        "r, w = os.pipe(); os.close(r); sys.stdout = os.fdopen(w, 'w')\n"
        "lines = [{'progress': {'stdout': 'row\\n' * 20000}}, {'progress': {'stderr': 'n\\n'}},"
        " {'ok': True, 'result': {'exit': 4}}]\n"
        "stream = io.BytesIO(b''.join(json.dumps(x).encode() + b'\\n' for x in lines))\n"
        "sys.exit(client._relay(stream, 'ps'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=30)
    assert (result.returncode, result.stderr) == (4, "n\n")
