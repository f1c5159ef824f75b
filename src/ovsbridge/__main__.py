"""``python -m ovsbridge``: the same CLI as the ``ovsbridge`` console script."""

from ovsbridge.cli import main

if __name__ == "__main__":
    main(prog_name="ovsbridge")
