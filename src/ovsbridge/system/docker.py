"""Guest lookup: turn ``GUEST`` (a container, ``netns:NAME`` or ``pid:N``) into a netns path.

Talks to dockerd through the docker SDK (imported only when a container is looked up) and
reads /proc and /var/run/netns. Refuses guests whose namespace is the host's own.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any

from ovsbridge.errors import BadInput, Conflict, EnvironmentProblem, NotFound
from ovsbridge.model import Guest, GuestSpec

log = logging.getLogger(__name__)
NETNS_RUN_DIR = "/var/run/netns"


def host_netns_inode() -> int:
    """The netns ovsbridge runs in: the host whose bridge the guest is put on."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@functools.cache
def _client() -> Any:
    """One Docker client per process (its API version is negotiated once)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise EnvironmentProblem("the docker Python SDK is not installed") from exc
    try:
        return docker.from_env(timeout=30)
    except DockerException as exc:
        raise EnvironmentProblem(
            f"cannot reach Docker: {exc}",
            hint="start dockerd, or set DOCKER_HOST to its socket",
        ) from exc


def inspect_container(ref: str) -> dict[str, Any] | None:
    """The container's inspect document, or None when Docker has no such container."""
    from docker.errors import APIError, DockerException
    from docker.errors import NotFound as DockerNotFound
    from requests.exceptions import RequestException

    client = _client()
    try:
        data: dict[str, Any] = client.api.inspect_container(ref)
        return data
    except DockerNotFound:
        return None
    except APIError as exc:
        raise EnvironmentProblem(f"Docker refused to inspect {ref!r}: {exc.explanation}") from exc
    except (DockerException, RequestException) as exc:
        # NOTE: a warm client whose dockerd went away raises requests' ConnectionError, which
        # is no DockerException.
        raise EnvironmentProblem(f"cannot reach Docker: {exc}",
                                 hint="start dockerd, or set DOCKER_HOST to its socket") from exc


def resolve_guest(spec: GuestSpec) -> Guest:
    if spec.kind == "netns":
        return _named_netns(spec.ref)
    if spec.kind == "pid":
        return _process(int(spec.ref))
    return _container(spec.ref)


def _named_netns(name: str) -> Guest:
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        raise NotFound(f'network namespace "{name}" does not exist',
                       hint="list them with 'ip netns list'") from None
    if inode == host_netns_inode():
        raise BadInput(f'network namespace "{name}" is the host\'s own',
                       hint="attach to a guest namespace, not the host's")
    return Guest("netns", name, name, None, path, inode)


def _process(pid: int) -> Guest:
    path = f"/proc/{pid}/ns/net"
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        raise NotFound(f"process {pid} does not exist", hint="check the pid with ps") from None
    except PermissionError:
        raise EnvironmentProblem(f"no permission to open the network namespace of process {pid}",
                                 hint="run as root outside any restricted sandbox") from None
    if inode == host_netns_inode():
        raise BadInput(f"process {pid} runs in the host's network namespace",
                       hint="give a process that has its own network namespace")
    return Guest("pid", str(pid), f"pid:{pid}", pid, path, inode)


def _container(ref: str) -> Guest:
    data = inspect_container(ref)
    if data is None:
        raise NotFound(f'container "{ref}" does not exist',
                       hint="check the name with 'docker ps'")
    name = data.get("Name", "").lstrip("/") or ref
    state = data.get("State") or {}
    if not state.get("Running") or not state.get("Pid"):
        raise Conflict(f'container "{name}" is not running', hint="start it, then attach again")
    mode = (data.get("HostConfig") or {}).get("NetworkMode") or ""
    if mode == "host":
        raise BadInput(f'container "{name}" uses the host\'s network',
                       hint="run it with --net=none (or a bridge network) to give it its own")
    if mode.startswith("container:"):
        raise BadInput(f'container "{name}" shares the network of another container',
                       hint="attach the container that owns the namespace instead")
    pid = int(state["Pid"])
    path = f"/proc/{pid}/ns/net"
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        raise Conflict(f'container "{name}" stopped while being looked up',
                       hint="start it, then attach again") from None
    if inode == host_netns_inode():
        raise BadInput(f'container "{name}" uses the host\'s network',
                       hint="run it with --net=none to give it its own")
    return Guest("docker", data["Id"], name, pid, path, inode,
                 resolv_conf=data.get("ResolvConfPath") or None)


@dataclass(frozen=True)
class ContainerStatus:
    exists: bool
    running: bool
    pid: int | None
    netns_inode: int | None
    name: str | None


def container_status(container_id: str) -> ContainerStatus:
    """Is the container there and running, and which netns is it in now."""
    data = inspect_container(container_id)
    if data is None:
        return ContainerStatus(False, False, None, None, None)
    state = data.get("State") or {}
    pid = int(state.get("Pid") or 0) or None
    inode = None
    if pid:
        try:
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except FileNotFoundError:
            inode = None
    return ContainerStatus(True, bool(state.get("Running")), pid, inode,
                           data.get("Name", "").lstrip("/") or None)
