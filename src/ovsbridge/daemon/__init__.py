"""The long-running side of ovsbridge: the engine that serves attach/detach/ps/cleanup."""
