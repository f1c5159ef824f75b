"""Command line of ovsbridge: parse, call ops, render, map errors to exit codes.

This module and render.py are the only ones that print. Every failure goes through one
funnel (``OvsbridgeGroup.invoke``): a one-line ``error:`` on stderr (JSON with --json), an
optional ``hint:`` line, and the error's documented exit code; tracebacks only with --debug.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ovsbridge import __version__
from ovsbridge.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    BadInput,
    EnvironmentProblem,
    OvsbridgeError,
)

if TYPE_CHECKING:
    from ovsbridge.render import Renderer
    from ovsbridge.system.ovs import Ovs

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (also: already done)
  1  the operation failed; what it had done was rolled back
  2  bad input or usage
  3  not found (bridge, container, namespace, process)
  4  conflict with what exists (use --replace where offered)
  5  environment: not root, OVS or Docker unreachable
"""


@dataclass
class AppContext:
    """Global options, shared by every command through ``click.Context.obj``."""

    db: str | None = None
    json: bool = False
    verbose: int = 0
    debug: bool = False
    _renderer: Renderer | None = field(default=None, repr=False)

    @property
    def ovs(self) -> Ovs:
        from ovsbridge.system.ovs import Ovs

        return Ovs(db=self.db)

    @property
    def render(self) -> Renderer:
        if self._renderer is None:
            from ovsbridge.render import Renderer

            self._renderer = Renderer(json_mode=self.json)
        return self._renderer


def app() -> AppContext:
    """The AppContext of the running command."""
    obj = click.get_current_context().find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def require_root(func: F) -> F:
    """Refuse to run (exit 5) before touching anything unless we are root."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.geteuid() != 0:
            raise EnvironmentProblem(
                "ovsbridge must run as root (it changes network namespaces and OVS)",
                hint="run it again with sudo",
            )
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def json_option(func: F) -> F:
    """``--json`` on a command: the same as the global ``--json``."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            obj = ctx.find_root().obj
            if isinstance(obj, AppContext):
                obj.json = True
                obj._renderer = None
        return value

    return click.option("--json", "json_", is_flag=True, expose_value=False, callback=set_json,
                        is_eager=True, help="Print machine-readable JSON on stdout.")(func)


# Commands live in their own modules, imported only when used (cheap start-up, no cycles).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "attach": ("ovsbridge.cli.core", "attach"),
    "detach": ("ovsbridge.cli.core", "detach"),
    "ps": ("ovsbridge.cli.core", "ps"),
    "cleanup": ("ovsbridge.cli.cleanup", "cleanup"),
    "setup-bridge": ("ovsbridge.cli.uplink", "setup_bridge"),
    "teardown-bridge": ("ovsbridge.cli.uplink", "teardown_bridge"),
    "confirm": ("ovsbridge.cli.uplink", "confirm"),
    "daemon": ("ovsbridge.cli.daemon", "daemon"),
    "set": ("ovsbridge.cli.set_cmd", "set_command"),
    "pipework": ("ovsbridge.cli.pipework", "pipework"),
    "adopt": ("ovsbridge.cli.adopt", "adopt"),
    "doctor": ("ovsbridge.cli.doctor", "doctor"),
    "completion": ("ovsbridge.cli.complete", "completion"),
    "ovn": ("ovsbridge.cli.ovn", "ovn"),
}


class OvsbridgeGroup(click.Group):
    """A click group that loads its commands lazily and whose invoke is the one error funnel."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        import importlib

        module_name, attr = LAZY_COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        importlib.import_module("ovsbridge.cli.examples").add_examples(cmd_name, command)
        if os.environ.get("_OVSBRIDGE_COMPLETE"):  # only while completing: keep start-up cheap
            importlib.import_module("ovsbridge.cli.complete").add_completion(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OvsbridgeError as exc:
            report_error(ctx, exc)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            wrapped = OvsbridgeError(f"internal error: {type(exc).__name__}: {exc}",
                                     hint="run again with --debug and report the traceback")
            report_error(ctx, wrapped, original=exc)
            ctx.exit(EXIT_FAILED)

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """Usage errors become one ``error:`` line and exit 2, like every other error."""
        argv = list(sys.argv[1:] if args is None else args)
        argv = ["pipework", *argv] if os.path.basename(sys.argv[0]) == "pipework" else argv
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f"'{exc.ctx.command_path} --help'" if exc.ctx else "'ovsbridge --help'"
            report_error(None, BadInput(exc.format_message(), hint=f"see {where}"),
                         json_mode="--json" in argv)
            code = EXIT_USAGE
        except click.ClickException as exc:
            report_error(None, OvsbridgeError(exc.format_message()), json_mode="--json" in argv)
            code = exc.exit_code
        except click.Abort:
            click.echo("error: aborted", err=True)
            code = EXIT_FAILED
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def report_error(ctx: click.Context | None, exc: OvsbridgeError,
                 original: BaseException | None = None, json_mode: bool = False) -> None:
    """One line on stderr: ``error: MESSAGE; hint: FIX`` (a JSON object with --json)."""
    obj = ctx.find_root().obj if ctx is not None else None
    if not isinstance(obj, AppContext):
        obj = AppContext(json=json_mode)
    if obj.debug:
        import traceback

        traceback.print_exception(original or exc, file=sys.stderr)
    if obj.json or json_mode:
        import json

        click.echo(json.dumps(exc.to_dict()), err=True)
        return
    text = f"error: {exc.message.rstrip('.')}"
    if exc.hint:
        text += f"; hint: {exc.hint}"
    click.echo(one_line(text), err=True)


def one_line(text: str) -> str:
    """TEXT as one printable line: line breaks become spaces, other control characters
    (a terminal escape in a user's value, say) are shown escaped."""
    joined = " ".join(text.splitlines())
    if joined.isprintable():
        return joined
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in joined)


def _setup_logging(verbose: int, debug: bool) -> None:
    """Log to stderr: WARNING by default; -v shows ovsbridge's own DEBUG log (every ovs-vsctl
    argv and netlink change). NOTE: without -v or --debug, logging is set up only by the
    in-process path (cli/engine.py), so the daemon path does not even import it."""
    if not (verbose or debug):
        return
    setup_logging(verbose)


def setup_logging(verbose: int = 0) -> None:
    import logging

    if logging.getLogger().handlers:
        return
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("ovsbridge").setLevel(logging.DEBUG)
    if verbose >= 3:
        logging.getLogger("pyroute2").setLevel(logging.DEBUG)


@click.group(cls=OvsbridgeGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.option("--db", envvar="OVSBRIDGE_DB", metavar="SOCKET",
              help="OVSDB to use, as ovs-vsctl --db (e.g. unix:/run/openvswitch/db.sock). "
                   "Env: OVSBRIDGE_DB.")
@click.option("--json", "json_", is_flag=True, help="Print machine-readable JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="Log every ovs-vsctl call and netlink change.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, "-V", "--version", prog_name="ovsbridge")
@click.pass_context
def main(ctx: click.Context, db: str | None, json_: bool, verbose: int, debug: bool) -> None:
    """Put containers straight onto your LAN through an Open vSwitch bridge.

    \b
    Typical use:
      ovsbridge setup-bridge eth0                  # move the uplink into ovsbr0
      ovsbridge attach ovsbr0 web1 dhcp            # web1 gets a LAN address
      ovsbridge attach ovsbr0 db1 198.51.100.18/24@198.51.100.1
      ovsbridge ps                                 # which port is which container
      ovsbridge cleanup                            # remove ports of dead containers
    """
    ctx.obj = AppContext(db=db or None, json=json_, verbose=verbose, debug=debug)
    _setup_logging(max(verbose, 1 if debug else 0), debug)


__all__ = ["AppContext", "app", "json_option", "main", "require_root"]
