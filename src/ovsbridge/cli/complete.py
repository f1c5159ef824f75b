"""Shell completion: click's (bash, zsh, fish), with bridge and container names.

``ovsbridge completion SHELL`` prints the script to source; the candidates come from a quick
``ovs-vsctl list-br`` and Docker's running containers. Completion never fails loudly: an
unreachable OVS or Docker just offers nothing.
"""

from __future__ import annotations

import subprocess
from typing import Any

import click
from click.shell_completion import CompletionItem

EPILOG = """\b
Examples:
  eval "$(ovsbridge completion bash)"          # in ~/.bashrc
  ovsbridge completion zsh > "${fpath[1]}/_ovsbridge"
  ovsbridge completion fish > ~/.config/fish/completions/ovsbridge.fish
"""


def bridge_names() -> list[str]:
    try:
        out = subprocess.run(["ovs-vsctl", "--timeout=2", "list-br"], capture_output=True,
                             text=True, timeout=3, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.split()


def container_names() -> list[str]:
    try:
        from ovsbridge.system.docker import _client

        return sorted(c.name for c in _client().containers.list())
    except Exception:
        return []


def _items(names: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_bridges(ctx: click.Context, param: click.Parameter,
                     incomplete: str) -> list[CompletionItem]:
    return _items(bridge_names(), incomplete)


def complete_containers(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[CompletionItem]:
    return _items(container_names(), incomplete)


def complete_pipework(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """pipework's positional grammar: BRIDGE (or route/rule/tc/--wait), then GUEST."""
    typed = [a for a in (ctx.params.get("args") or ()) if a]
    if not typed:
        return _items(bridge_names() + ["route", "rule", "tc", "--wait"], incomplete)
    flags = [a for a in typed[1:] if a in ("-i", "-l", "-a")]
    if len(typed) == 1 + 2 * len(flags):
        return _items(container_names() + ["-i", "-l", "-a"], incomplete)
    return []


# What to complete on the parameters of every command, by parameter name.
BY_PARAM = {"bridge": complete_bridges, "guest": complete_containers,
            "targets": complete_containers}


def add_completion(command: click.Command) -> click.Command:
    """Give COMMAND's bridge/guest parameters name completion where they have none."""
    for param in command.params:
        callback = BY_PARAM.get(param.name or "")
        if callback is not None and getattr(param, "_custom_shell_complete", None) is None:
            param._custom_shell_complete = callback  # click's own hook attribute
    return command


@click.command(epilog=EPILOG)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish)."""
    from click.shell_completion import get_completion_class

    from ovsbridge.cli import main

    cls = get_completion_class(shell)
    assert cls is not None
    source: Any = cls(main, {}, "ovsbridge", "_OVSBRIDGE_COMPLETE").source()
    click.echo(source)
