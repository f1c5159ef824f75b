"""ovsbridge: put containers straight onto a LAN through an Open vSwitch bridge.

Importing the package has no side effects; the heavy imports live where they are used.
"""

__version__ = "0.1.0"
