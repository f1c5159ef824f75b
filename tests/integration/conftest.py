"""Fixtures shared by the integration tests (on top of tests/conftest.py's lab fixtures)."""

from integration.test_daemon import home  # noqa: F401 - a private daemon per test, stopped by PID
