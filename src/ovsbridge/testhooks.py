"""Names of the test-only failure hooks (environment variables); see ops/undo.py.

Pure constants, so the CLI's cheap path can forward them to the daemon without importing ops.
"""

FAIL_AT_ENV = "OVSBRIDGE_TEST_FAIL_AT"  # raise right after the named step (its undo runs)
KILL_AT_ENV = "OVSBRIDGE_TEST_KILL_AT"  # SIGKILL this process right after the named step
