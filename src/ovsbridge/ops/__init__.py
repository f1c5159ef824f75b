"""Decisions and undo: what attach, detach, ps, cleanup and setup-bridge do, never how."""
