"""Fixtures shared by the integration tests (on top of tests/conftest.py's lab fixtures)."""

from lab.daemon_home import home  # noqa: F401 - a private daemon per test, stopped by PID
