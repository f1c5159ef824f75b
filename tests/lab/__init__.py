"""The test lab: real OVS bridges, network namespaces, containers and dnsmasq for the tests.

Import helpers as ``from lab.snapshots import root_links`` (``tests/`` is on sys.path through
``tests/conftest.py``; do not add a ``tests/__init__.py``). Everything here acts on the real
machine; every resource it creates is registered for removal (see ``lab.resources.Lab``).
"""

from __future__ import annotations

import ipaddress
import os

TEST_IMAGE = os.environ.get("OVSBRIDGE_TEST_IMAGE") or "ovsbridge-test:busybox"
TEST_LABEL = "ovsbridge-test"
SESSION_LABEL = "ovsbridge-test.session"
NAME_PREFIX = "obt"
# Names that look like ours: the harness (obt*) and the product's veth ends (ovb*/ovp*).
LEAK_PREFIXES = ("obt", "ovb", "ovp")
TEST_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
