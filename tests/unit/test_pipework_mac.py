"""naming.pipework_mac equals what the real pipework computes for ``U:TEXT``, for any text.

The oracle is dash itself running pipework's own line (taken from the real script when it is
present): ``MACADDR=$(echo $macunique|md5sum|sed ...)``, on thousands of random texts full of
what dash treats specially (whitespace runs, tabs, newlines, backslash escapes, ``-n``).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile

import pytest
from lab.peers import pipework_path

from ovsbridge import naming

# pipework 9ba97f1, line 62 (used when the real script is absent)
PIPEWORK_LINE = ("MACADDR=$(echo $macunique|md5sum|"
                 "sed 's/^\\(..\\)\\(..\\)\\(..\\)\\(..\\)\\(..\\).*$/02:\\1:\\2:\\3:\\4:\\5/')")
PIECES = [" ", "  ", "\t", "\n", " \t ", "\\", "\\\\", "\\c", "\\n", "\\t", "\\0", "\\01",
          "\\0101", "\\101", "\\777", "\\8", "\\x41", "\\e", "\\a", "\\v", "-n", "-n ", " -n",
          "-e", "-", "n", "c", "0", "7", "9", "web1", "a", "Z", "é", "*", "?", "[x", ":", "'",
          '"', "$", "%", "%s"]


def pipework_line() -> str:
    path = pipework_path()
    if path is not None:
        for line in path.read_text().splitlines():
            if "echo $macunique" in line:
                return line.strip()
    return PIPEWORK_LINE


def pipework_macs(texts: list[str]) -> list[str]:
    """Run pipework's line under dash for each text (in an empty directory, so no glob
    character matches a file), in one dash process."""
    script = f'for macunique in "$@"; do {pipework_line()}; printf "%s\\n" "$MACADDR"; done'
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(["dash", "-c", script, "sh", *texts], cwd=empty, check=True,
                             capture_output=True, text=True, timeout=120).stdout
    return out.splitlines()


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash is not installed")
def test_pipework_mac_equals_pipework_for_random_texts() -> None:
    rng = random.Random(20261201)
    texts = [random_text(rng) for _ in range(3000)]
    texts += ["web1", "a b", "a  b", " a\tb \n", "-n", "-n web1", "web1 -n", "a\\cb", "\\",
              "a\\\\b", "\\0101", "", " ", "\t\t"]
    expected = pipework_macs(texts)
    assert len(expected) == len(texts)
    mismatches = [(t, e, naming.pipework_mac(t)) for t, e in zip(texts, expected, strict=True)
                  if naming.pipework_mac(t) != e]
    assert mismatches == []


def test_pipework_mac_is_locally_administered_unicast() -> None:
    assert naming.pipework_mac("web1")[:3] == "02:"
    assert naming.pipework_mac("a  b") == naming.pipework_mac(" a\tb\n")
    assert naming.pipework_mac("a b") != naming.pipework_mac("ab")
