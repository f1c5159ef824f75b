#!/usr/bin/env bash
# The test command: `./scripts/test.sh [PYTEST ARGS...]`, as root.
#
# Sets up the lab (scripts/lab.sh), a venv at .venv with the project and its test extras,
# lints with ruff, type-checks with mypy (strict), then runs pytest with the given arguments.
# The exit code is pytest's, except that "no tests collected" (5) is a failure too.
#
# The session-end leak check runs in "global" mode here (anything left that looks like ours
# fails the run: right for CI and an exclusive lab machine). On a machine shared with other
# test runs, use OVSBRIDGE_TEST_LEAKCHECK=session ./scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/lab.sh

if [[ ! -x .venv/bin/python ]]; then
    echo "test: creating .venv"
    python3 -m venv .venv
fi
# NOTE: the install is editable, so source changes need no reinstall; reinstall only when
# pyproject.toml changed (dependencies, entry points).
stamp=.venv/.ovsbridge-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "test: installing the project with its test extras into .venv"
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$want" >"$stamp"
fi

echo "test: ruff check src tests"
.venv/bin/ruff check src tests
echo "test: mypy src (strict)"
.venv/bin/mypy src

export OVSBRIDGE_TEST_LEAKCHECK="${OVSBRIDGE_TEST_LEAKCHECK:-global}"
echo "test: pytest $* (leak check: $OVSBRIDGE_TEST_LEAKCHECK)"
rc=0
.venv/bin/pytest "$@" || rc=$?
if ((rc == 5)); then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
((rc == 0)) || exit "$rc"

# The unit tests need no root, OVS or Docker: prove it by running them as nobody, from a copy
# of the tree in a private temporary directory, with Debian's python3 (the venv's interpreter
# may live under /root).
if [[ -z ${OVSBRIDGE_SKIP_UNPRIVILEGED:-} ]] && id nobody >/dev/null 2>&1; then
    echo "test: unit tests as an unprivileged user (nobody)"
    work=$(mktemp -d /tmp/ovsbridge-unpriv.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    git ls-files -z | xargs -0 cp --parents -t "$work" 2>/dev/null || cp -r src tests pyproject.toml README.md "$work"
    chown -R nobody:nogroup "$work"
    setpriv --reuid nobody --regid nogroup --clear-groups env HOME="$work" PATH=/usr/bin:/bin \
        bash -c "cd '$work' && /usr/bin/python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' \
                 && .venv/bin/python -m pytest tests/unit -q -p no:cacheprovider"
fi
