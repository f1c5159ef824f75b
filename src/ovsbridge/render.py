"""Output for people (rich tables on a terminal) and for machines (one JSON document).

stdout carries the result; stderr carries notes, progress and errors. User-supplied text is
escaped before rich renders it, so a container named ``[red]x`` prints as typed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


# Cells that are a state word get a colour on a terminal (never with NO_COLOR, never piped).
STATE_COLOURS = {"ok": "green", "stale": "red", "error": "red", "fail": "red",
                 "warning": "yellow", "removed": "yellow", "would remove": "yellow"}


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): any non-empty value turns colour and styles off."""
    return bool(os.environ.get("NO_COLOR"))


class Renderer:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            from rich.console import Console

            # NOTE: piped output (grep, awk) must not wrap columns at rich's default 80.
            width = None if sys.stdout.isatty() else 250
            self._out = Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width,
                                no_color=no_color())
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            from rich.console import Console

            self._err = Console(file=sys.stderr, highlight=False, soft_wrap=True,
                                no_color=no_color())
        return self._err

    def data(self, payload: Any) -> None:
        """The one JSON document of a --json run."""
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """A plain result line on stdout (people mode only)."""
        if not self.json_mode:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        """A remark for people on stderr (warnings, what was skipped)."""
        if not self.json_mode:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              title: str | None = None) -> None:
        """Columns for people: a rich table on a terminal, plain aligned text when piped
        (no colour, no rich import: cheap for scripts)."""
        if not sys.stdout.isatty():
            self._plain_table(columns, rows, title)
            return
        from rich.markup import escape
        from rich.table import Table

        plain = no_color()
        table = Table(title=title, box=None, header_style=None if plain else "bold",
                      pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            cells = [escape("-" if v is None or v == "" else str(v)) for v in row]
            if not plain:
                cells = [f"[{STATE_COLOURS[c]}]{c}[/]" if c in STATE_COLOURS else c
                         for c in cells]
            table.add_row(*cells)
        self.out.print(table)

    def _plain_table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                     title: str | None) -> None:
        cells = [list(columns)] + [["-" if v is None or v == "" else " ".join(str(v).split())
                                    for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        out = [title] if title else []
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                for r in cells]
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner on stderr while something slow runs (only on a terminal)."""
        if self.json_mode or not sys.stderr.isatty():
            yield
            return
        from rich.markup import escape

        with self.err.status(escape(text)):
            yield
