"""Docker, as the watcher sees it: the container event stream and the running containers.

Blocking calls through the docker SDK (``DOCKER_HOST`` is honoured, as by ``docker``); the
watcher runs them in threads. A lost connection ends the event stream (the SDK turns socket
errors into the end of the iteration) and is reported by ``DockerGone``; docker.errors never
leave this module. ``close()`` may be called from another thread to end a blocked stream.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ovsbridge.errors import (
    DockerGone,
    )

log = logging.getLogger(__name__)

WATCHED_ACTIONS = ("start", "die", "stop", "destroy")
LABEL_PREFIX = "ovsbridge."




@dataclass(frozen=True)
class ContainerEvent:
    action: str  # start | die | stop | destroy
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)  # ovsbridge.* labels only
    time: float = 0.0


@dataclass(frozen=True)
class RunningContainer:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)  # ovsbridge.* labels only


def ours(labels: dict[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (labels or {}).items() if k.startswith(LABEL_PREFIX)}


class DockerEvents:
    """One connection to dockerd (made by ``connect``, dropped by ``close``)."""

    def __init__(self, timeout: int = 30) -> None:
        self.timeout = timeout
        self._client: Any = None
        self._stream: Any = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def connect(self) -> None:
        import docker
        from docker.errors import DockerException

        self.close()
        try:
            client = docker.from_env(timeout=self.timeout)
            client.ping()
        except DockerException as exc:
            raise DockerGone(f"cannot reach Docker at {self.where}: {exc}") from exc
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise DockerGone(f"cannot reach Docker at {self.where}: {exc}") from exc
        with self._lock:
            self._client = client

    def running(self) -> list[RunningContainer]:
        """Running containers that carry ovsbridge labels."""
        from docker.errors import DockerException

        client = self._require()
        try:
            rows = client.api.containers(filters={"label": "ovsbridge.bridge",
                                                  "status": "running"})
        except (DockerException, OSError) as exc:
            raise DockerGone(f"lost Docker at {self.where}: {exc}") from exc
        out = []
        for row in rows:
            names = row.get("Names") or []
            name = names[0].lstrip("/") if names else row["Id"][:12]
            out.append(RunningContainer(row["Id"], name, ours(row.get("Labels"))))
        return out

    def events(self) -> Iterator[ContainerEvent]:
        """Subscribe now (the request is made before this returns), then iterate the events
        as they happen; the iteration raises DockerGone when the connection is lost."""
        from docker.errors import DockerException

        client = self._require()
        try:
            stream = client.api.events(decode=True, filters={
                "type": "container", "event": list(WATCHED_ACTIONS)})
        except (DockerException, OSError) as exc:
            raise DockerGone(f"lost Docker at {self.where}: {exc}") from exc
        with self._lock:
            self._stream = stream
        return self._iterate(stream)

    def _iterate(self, stream: Any) -> Iterator[ContainerEvent]:
        from docker.errors import DockerException

        try:
            for raw in stream:
                event = _event(raw)
                if event is not None:
                    yield event
        except (DockerException, OSError, ValueError) as exc:
            raise DockerGone(f"lost Docker at {self.where}: {exc}") from exc
        raise DockerGone(f"the event stream from Docker at {self.where} ended")

    def close(self) -> None:
        """End the stream (from any thread) and drop the connection."""
        with self._lock:
            stream, client = self._stream, self._client
            self._stream = self._client = None
        for closer in (getattr(stream, "close", None), getattr(client, "close", None)):
            if closer is None:
                continue
            try:
                closer()
            except Exception as exc:  # already broken: nothing left to close
                log.debug("closing the Docker connection: %s", exc)

    def _require(self) -> Any:
        with self._lock:
            client = self._client
        if client is None:
            raise DockerGone(f"not connected to Docker at {self.where}")
        return client


def _event(raw: dict[str, Any]) -> ContainerEvent | None:
    action = str(raw.get("Action") or raw.get("status") or "")
    # NOTE: some actions carry a suffix ("exec_start: sh"); ours never do.
    if action not in WATCHED_ACTIONS:
        return None
    actor = raw.get("Actor") or {}
    cid = str(actor.get("ID") or raw.get("id") or "")
    if not cid:
        return None
    attributes = actor.get("Attributes") or {}
    when = raw.get("timeNano")
    stamp = int(when) / 1e9 if when else float(raw.get("time") or 0)
    return ContainerEvent(action, cid, str(attributes.get("name") or cid[:12]),
                          ours(attributes), stamp)
