"""Shell completion: the scripts generate, and bridge and container names complete."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from lab.daemon_home import home

pytestmark = pytest.mark.lab
__all__ = ["home"]  # attach may start a daemon: a private home, stopped after the test


def complete(*words: str) -> list[str]:
    env = {**os.environ, "_OVSBRIDGE_COMPLETE": "bash_complete",
           "COMP_WORDS": " ".join(("ovsbridge", *words)), "COMP_CWORD": str(len(words))}
    out = subprocess.run([sys.executable, "-m", "ovsbridge"], env=env, capture_output=True,
                         text=True, timeout=60, check=False).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if "," in line]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_generate(ovsbridge, shell):
    done = ovsbridge("completion", shell)
    assert done.returncode == 0 and "_OVSBRIDGE_COMPLETE" in done.stdout


def test_bridge_and_container_names_complete(bridge, make_container):
    box = make_container()
    assert complete("attach", bridge[:-2]) == [bridge]
    assert complete("adopt", bridge[:-2]) == [bridge]
    assert complete("doctor", "--bridge", bridge[:-2]) == [bridge]
    assert complete("pipework", bridge[:-2]) == [bridge]
    assert box.name in complete("attach", bridge, box.name[:-3])
    assert box.name in complete("pipework", bridge, box.name[:-3])
    assert box.name in complete("pipework", bridge, "-i", "eth2", box.name[:-3])


def on_a_terminal(command: str, env: dict[str, str]) -> str:
    """COMMAND's output as a terminal shows it (``script`` gives it a pty)."""
    done = subprocess.run(["script", "-qec", f"stty cols 250; {command}", "/dev/null"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_colour_on_a_terminal_none_with_no_color_or_piped(bridge, make_container, ovsbridge,
                                                           home):
    box = make_container()
    assert ovsbridge("attach", bridge, box.name, "198.51.100.44/24").returncode == 0
    command = f"{sys.executable} -m ovsbridge ps {bridge}"
    assert "\x1b[32mok" in on_a_terminal(command, {})
    plain = on_a_terminal(command, {"NO_COLOR": "1"})
    assert "\x1b[" not in plain and " ok " in plain
    assert "\x1b[" not in ovsbridge("ps", bridge).stdout  # piped
