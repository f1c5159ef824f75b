"""Adapters with side effects: OVS (ovs-vsctl), netlink (pyroute2), Docker, DHCP."""
