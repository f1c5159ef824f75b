"""Subprocess helpers for the lab: run a command, fail loudly with its output."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class LabError(RuntimeError):
    """The lab could not create, inspect or remove one of its resources."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ARGV (text mode, output captured); with CHECK a non-zero exit raises LabError."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if check and proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise LabError(f"{' '.join(argv)}: exit {proc.returncode}: {output}")
    return proc
