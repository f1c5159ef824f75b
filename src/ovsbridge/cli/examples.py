"""Examples for the ``--help`` of commands that carry none in their own epilog.

Applied when a command is loaded (``cli.OvsbridgeGroup.get_command``); a command that has an
epilog of its own keeps it. Move a text into its command's module when editing that module.
"""

from __future__ import annotations

import click

EXAMPLES: dict[str, str] = {
    "cleanup": """\b
Examples:
  ovsbridge cleanup --dry-run            # what would go, and why the rest stays
  ovsbridge cleanup --bridge ovsbr0
  ovsbridge cleanup --json | jq '.removed[].port'
""",
    "setup-bridge": """\b
Examples:
  ovsbridge setup-bridge eth0                       # eth0 into ovsbr0; Enter to keep it
  ovsbridge setup-bridge eth0 --dhcp --yes          # the bridge takes eth0's DHCP lease
  ovsbridge setup-bridge eth0 --bridge ovslan --dry-run
""",
    "teardown-bridge": """\b
Examples:
  ovsbridge teardown-bridge                         # ovsbr0's uplink gets its addresses back
  ovsbridge teardown-bridge --bridge ovslan --force # detaching its containers first
""",
    "confirm": """\b
Examples:
  ovsbridge confirm                                 # from a second shell, after setup-bridge
""",
    "ovn": """\b
Examples:
  ovsbridge ovn join --central tcp:203.0.113.10:6642 --bridge-mapping lan:ovsbr0
  ovsbridge ovn switch create web --subnet 198.51.100.0/24 --dhcp
  ovsbridge attach br-int web1 dhcp --ovn-switch web
  ovsbridge ovn status
""",
    "daemon": """\b
Examples:
  ovsbridge daemon status
  ovsbridge daemon run                              # in the foreground (systemd)
  ovsbridge daemon stop
""",
}


def add_examples(name: str, command: click.Command) -> click.Command:
    text = EXAMPLES.get(name)
    if text and not command.epilog:
        command.epilog = text
    return command
