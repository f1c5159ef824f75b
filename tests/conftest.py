"""Test layout: ``tests/unit`` runs anywhere (no root, no OVS, no Docker); the lab fixtures
(real OVS, network namespaces, dockerd, dnsmasq) live in ``tests/integration/conftest.py``.

This file only puts ``tests/`` on sys.path so both can import the helpers in ``tests/lab``
(``from lab.snapshots import root_links``).
"""

from __future__ import annotations
