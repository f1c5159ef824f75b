"""``python -m ovsbridge``: the same entry point as the ``ovsbridge`` console script."""

from ovsbridge.client import main

if __name__ == "__main__":
    main()
