"""Shell completion: the scripts generate, and bridge and container names complete."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lab


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
