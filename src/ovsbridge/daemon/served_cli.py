"""Command lines the daemon runs for thin clients (ovsbridge.client), with warm imports.

The daemon runs the very same click CLI a client would have run, in a worker thread; that
thread's stdout and stderr (click.echo, the renderer, rich) go to the client as they are
written, and the engine ops it asks for run right here (cli/engine.py serving). Other threads
(the daemon's own log, other clients) are untouched: ``sys.stdout``/``sys.stderr`` are
replaced once by streams that route each write by the thread that makes it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Sink = Callable[[str], None]


class ThreadRoutedStream:
    """A text stream that sends a thread's writes to that thread's sink, when it has one,
    and everything else to the stream it replaced."""

    # NOTE: what click checks before it trusts a text stream as it is (an ASCII one, say a
    # log file under LANG=C, it would wrap, writing past the routing).
    encoding = "utf-8"
    errors = "strict"

    def __init__(self, original: TextIO) -> None:
        self._original = original
        self._local = threading.local()

    def _sink(self) -> Sink | None:
        return getattr(self._local, "sink", None)

    @contextmanager
    def routed(self, sink: Sink) -> Iterator[None]:
        """This thread's writes go to SINK meanwhile (nesting allowed)."""
        before = self._sink()
        self._local.sink = sink
        try:
            yield
        finally:
            self._local.sink = before

    def write(self, text: str) -> int:
        # NOTE: refuse bytes as a text stream does: click probes streams with write(b"")
        # and would take one that accepts it for a binary stream.
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        sink = self._sink()
        if sink is None:
            return self._original.write(text)
        if text:
            sink(text)
        return len(text)

    def flush(self) -> None:
        if self._sink() is None:
            self._original.flush()

    def isatty(self) -> bool:
        return False if self._sink() is not None else self._original.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, fileno, buffer ...
        return getattr(self._original, name)


def _routed_std() -> tuple[ThreadRoutedStream, ThreadRoutedStream]:
    """sys.stdout and sys.stderr as ThreadRoutedStreams (installed once)."""
    with _install_lock:
        if not isinstance(sys.stdout, ThreadRoutedStream):
            sys.stdout = ThreadRoutedStream(sys.stdout)
        if not isinstance(sys.stderr, ThreadRoutedStream):
            sys.stderr = ThreadRoutedStream(sys.stderr)
        return sys.stdout, sys.stderr


_install_lock = threading.Lock()


def run_command_line(argv: list[str], env: dict[str, str],
                     run: Callable[[str, dict[str, Any], Any], Any],
                     out: Sink, err: Sink) -> int:
    """Run ``ovsbridge ARGV`` as the client would have; its exit code. RUN(op, payload,
    on_progress) does the engine's work; OUT/ERR get the run's stdout/stderr text."""
    from ovsbridge import cli
    from ovsbridge.cli import engine as cli_engine

    stdout, stderr = _routed_std()

    def bound(callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """CALLBACK, writing to this client wherever it runs (the engine reports a bulk
        op's guests from its worker threads)."""
        def call(value: Any) -> None:
            with stdout.routed(out), stderr.routed(err):
                callback(value)

        return call

    def run_here(op: str, payload: dict[str, Any], on_progress: Any) -> Any:
        return run(op, payload, None if on_progress is None else bound(on_progress))

    with stdout.routed(out), stderr.routed(err), cli_engine.serving(run_here, env):
        try:
            code = cli.main.main(args=argv, prog_name="ovsbridge", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
    return code if isinstance(code, int) else 0
