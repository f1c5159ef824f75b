"""A small RFC 7047 client: OVSDB JSON-RPC straight to ovsdb-server's socket.

ovs-vsctl reads the whole database on every call, so its cost grows with the port count;
this client sends precise ``select``/``transact`` requests over persistent connections
(``unix:PATH`` or ``tcp:HOST:PORT``), so an attach reads only its own rows. Connections are
pooled per target and checked out by one thread at a time (the daemon calls in from worker
threads); a connection found broken is replaced once. Every call has a bounded timeout.
``transact(..., wait=True)`` bumps ``Open_vSwitch.next_cfg`` in the same transaction and then
blocks (server side, an OVSDB ``wait`` operation) until ovs-vswitchd reports ``cur_cfg`` >= it,
as ovs-vsctl does. Failures become domain errors: ovsdb-server absent or silent and
ovs-vswitchd not applying are environment problems (exit 5), a refused transaction an
operation failure with OVSDB's own error and details.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import logging
import os
import select as select_mod
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ovsbridge.errors import (
    BadInput,
    EnvironmentProblem,
    OperationFailed,
    OvsbridgeError,
    VswitchdNotApplied,
)

log = logging.getLogger(__name__)

DB_NAME = "Open_vSwitch"
DEFAULT_TIMEOUT = 5.0  # seconds for ovsdb-server to answer one request
DEFAULT_APPLY_TIMEOUT = 5.0  # seconds for ovs-vswitchd to apply a committed change
RECV_SIZE = 262144
HINT_START = "start Open vSwitch (ovs-ctl start) or pass --db"


class Uuid(str):
    """An OVSDB ``["uuid", ...]`` atom (a row reference); a plain str otherwise."""

    __slots__ = ()


class NamedUuid(str):
    """An OVSDB ``["named-uuid", ...]``: a row inserted earlier in the same transaction."""

    __slots__ = ()


# ----- JSON codec ---------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """Python value -> OVSDB JSON datum: dict is a map, list/tuple/set a set."""
    if isinstance(value, NamedUuid):
        return ["named-uuid", str(value)]
    if isinstance(value, Uuid):
        return ["uuid", str(value)]
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return ["map", [[encode(k), encode(v)] for k, v in value.items()]]
    if isinstance(value, list | tuple | set | frozenset):
        return ["set", [encode(v) for v in value]]
    raise TypeError(f"no OVSDB encoding for {type(value).__name__}")


def decode(raw: Any) -> Any:
    """OVSDB JSON datum -> Python: map -> dict, set -> list, uuid -> Uuid."""
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
        tag, body = raw
        if tag == "uuid":
            return Uuid(body)
        if tag == "named-uuid":
            return NamedUuid(body)
        if tag == "set":
            return [decode(v) for v in body]
        if tag == "map":
            return {decode(k): decode(v) for k, v in body}
    return raw


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {column: decode(value) for column, value in row.items()}


def as_set(value: Any) -> list[Any]:
    """A set column as a list (OVSDB sends a one-element set as the bare element)."""
    return value if isinstance(value, list) else [value]


def optional(value: Any) -> Any:
    """An optional column (a set of at most one) as its value or None."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else None
    return value


def condition(column: str, function: str, value: Any) -> list[Any]:
    return [column, function, encode(value)]


# ----- where the database is ---------------------------------------------------------------
def default_target() -> str:
    """OVS's own default socket, honouring OVS_RUNDIR as ovs-vsctl does."""
    rundir = os.environ.get("OVS_RUNDIR") or "/var/run/openvswitch"
    return f"unix:{os.path.join(rundir, 'db.sock')}"


def parse_target(target: str) -> tuple[int, Any]:
    """``unix:PATH`` / ``tcp:HOST:PORT`` -> (address family, socket address)."""
    if target.startswith("unix:") and len(target) > 5:
        return socket.AF_UNIX, target[5:]
    if target.startswith("tcp:"):
        rest = target[4:]
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if sep and host and port.isdigit():
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return family, (host, int(port))
    raise BadInput(f'cannot use OVSDB address "{target}"',
                   hint="give --db as unix:PATH or tcp:HOST:PORT")


# ----- one connection ----------------------------------------------------------------------
class _Broken(Exception):
    """The connection broke; ``sent`` tells whether the request may have reached the server."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class _Timeout(Exception):
    pass


class _Connection:
    """One JSON-RPC stream; used by one thread at a time (the pool guarantees it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = ""
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.decoder = json.JSONDecoder()
        self.next_id = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def stale(self) -> bool:
        """True when the server closed this idle connection (EOF or error waiting)."""
        try:
            readable, _, _ = select_mod.select([self.sock], [], [], 0)
            if not readable:
                return False
            data = self.sock.recv(RECV_SIZE, socket.MSG_PEEK)
        except OSError:
            return True
        return data == b""

    def call(self, method: str, params: list[Any], timeout: float) -> Any:
        self.next_id += 1
        request_id = self.next_id
        payload = json.dumps({"method": method, "params": params, "id": request_id})
        deadline = time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(payload.encode())
        except TimeoutError as exc:
            raise _Timeout() from exc
        except OSError as exc:
            raise _Broken(os.strerror(exc.errno or errno.EPIPE), sent=False) from exc
        while True:
            message = self._read(deadline)
            if message.get("id") == request_id:
                return message
            if message.get("method") == "echo":
                # NOTE: ovsdb-server probes idle TCP sessions with "echo"; no answer within
                # its inactivity probe and it drops the connection.
                reply = {"id": message.get("id"), "result": message.get("params"), "error": None}
                self.sock.sendall(json.dumps(reply).encode())
            # anything else (a notification, a stale reply) is not ours: skip it

    def _read(self, deadline: float) -> dict[str, Any]:
        while True:
            text = self.buf.lstrip()
            # NOTE: every JSON-RPC message is an object, so a buffer not ending in "}" is
            # incomplete; this keeps a large reply from being re-parsed at every chunk.
            if text and text.rstrip().endswith("}"):
                try:
                    message, end = self.decoder.raw_decode(text)
                except json.JSONDecodeError:
                    pass  # incomplete: read more
                else:
                    self.buf = text[end:]
                    if not isinstance(message, dict):
                        raise _Broken("not a JSON-RPC message", sent=True)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            try:
                self.sock.settimeout(remaining)
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError as exc:
                raise _Timeout() from exc
            except OSError as exc:
                raise _Broken(os.strerror(exc.errno or errno.ECONNRESET), sent=True) from exc
            if not data:
                raise _Broken("connection closed by ovsdb-server", sent=True)
            self.buf += self.utf8.decode(data)


# ----- the client --------------------------------------------------------------------------
class OvsdbClient:
    """OVSDB at TARGET (default: OVS's own socket); safe to share between threads."""

    def __init__(self, target: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 apply_timeout: float = DEFAULT_APPLY_TIMEOUT) -> None:
        self.target = target or default_target()
        self.family, self.address = parse_target(self.target)
        self.timeout = timeout
        self.apply_timeout = apply_timeout
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    # connections ---------------------------------------------------------------------------
    def _connect(self) -> _Connection:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.address)
        except TimeoutError as exc:
            sock.close()
            raise self._silent() from exc
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                raise EnvironmentProblem(
                    f"ovsdb-server is not running at {self.target}", hint=HINT_START,
                    db=self.target,
                ) from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise EnvironmentProblem(
                    f"no permission to connect to ovsdb-server at {self.target}",
                    hint="run ovsbridge as root", db=self.target,
                ) from exc
            raise EnvironmentProblem(
                f"cannot connect to ovsdb-server at {self.target}: "
                f"{os.strerror(exc.errno or errno.EIO)}", hint=HINT_START, db=self.target,
            ) from exc
        if self.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("ovsdb: connected to %s", self.target)
        return _Connection(sock)

    def _checkout(self) -> tuple[_Connection, bool]:
        """An idle live connection (reused=True) or a new one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(), False
            if not conn.stale():
                return conn, True
            conn.close()

    def _checkin(self, conn: _Connection) -> None:
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _silent(self) -> EnvironmentProblem:
        return EnvironmentProblem(
            f"ovsdb-server at {self.target} does not answer",
            hint="check ovsdb-server (ovs-appctl -t ovsdb-server version) or restart Open "
                 "vSwitch (ovs-ctl restart)", db=self.target,
        )

    def call(self, method: str, params: list[Any], *, timeout: float | None = None,
             idempotent: bool = True) -> Any:
        """One JSON-RPC request; its ``result``. A broken connection is replaced once."""
        timeout = self.timeout if timeout is None else timeout
        for attempt in (1, 2):
            conn, _reused = self._checkout()
            try:
                reply = conn.call(method, params, timeout)
            except _Timeout as exc:
                conn.close()
                raise self._silent() from exc
            except _Broken as exc:
                conn.close()
                # NOTE: retry only what cannot run twice: a read, or a request that never
                # left this host. A transaction that was sent may have been committed.
                if attempt == 1 and (idempotent or not exc.sent):
                    log.debug("ovsdb: connection to %s broke (%s), reconnecting",
                              self.target, exc)
                    continue
                raise EnvironmentProblem(
                    f"lost the connection to ovsdb-server at {self.target}: {exc}",
                    hint=HINT_START, db=self.target,
                ) from exc
            except BaseException:
                conn.close()
                raise
            self._checkin(conn)
            if reply.get("error") is not None:
                raise OperationFailed(f"OVSDB refused {method}: {_error_text(reply['error'])}",
                                      db=self.target)
            return reply.get("result")
        raise AssertionError("unreachable")

    # operations ----------------------------------------------------------------------------
    def select(self, table: str, where: Sequence[list[Any]] = (),
               columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rows of TABLE matching WHERE (conditions as built by ``condition``)."""
        op: dict[str, Any] = {"op": "select", "table": table, "where": list(where)}
        if columns is not None:
            op["columns"] = list(columns)
        return self.read([op])[0]

    def read(self, selects: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Several select operations in one round trip; one list of rows for each."""
        results = self._transact_raw(list(selects), idempotent=True)
        return [[decode_row(r) for r in res.get("rows", [])] for res in results]

    def transact(self, operations: Sequence[dict[str, Any]], wait: bool = True,
                 ) -> list[dict[str, Any]]:
        """Run OPERATIONS as one transaction; their results (uuids decoded).

        With WAIT, return only once ovs-vswitchd has applied the change; raises
        VswitchdNotApplied (after the commit) when it does not within ``apply_timeout``.
        """
        ops = list(operations)
        if wait:
            ops += [
                {"op": "mutate", "table": DB_NAME, "where": [],
                 "mutations": [["next_cfg", "+=", 1]]},
                {"op": "select", "table": DB_NAME, "where": [], "columns": ["next_cfg"]},
            ]
        results = self._transact_raw(ops, idempotent=False)
        if wait:
            rows = results[-1].get("rows") or [{}]
            self.wait_applied(int(rows[0].get("next_cfg", 0)))
            results = results[: len(operations)]
        return [decode_row(r) for r in results]

    def transact_deferred(self, operations: Sequence[dict[str, Any]]
                          ) -> tuple[list[dict[str, Any]], int]:
        """Like ``transact(wait=True)`` but without waiting: the results and the next_cfg to
        hand to ``wait_applied`` later (the caller overlaps other work with vswitchd's)."""
        ops = [*operations,
               {"op": "mutate", "table": DB_NAME, "where": [],
                "mutations": [["next_cfg", "+=", 1]]},
               {"op": "select", "table": DB_NAME, "where": [], "columns": ["next_cfg"]}]
        results = self._transact_raw(ops, idempotent=False)
        rows = results[-1].get("rows") or [{}]
        return [decode_row(r) for r in results[: len(operations)]], int(
            rows[0].get("next_cfg", 0))

    def wait_applied(self, next_cfg: int) -> None:
        """Block until Open_vSwitch.cur_cfg >= NEXT_CFG (ovs-vswitchd caught up)."""
        # NOTE: an OVSDB "wait" is re-evaluated by ovsdb-server at every commit until it
        # holds or its timeout ends, so this is one round trip that returns as soon as
        # ovs-vswitchd writes cur_cfg (no polling). "No row with cur_cfg < N" reads as
        # cur_cfg >= N, which also holds when another client's change pushed it past N.
        op = {"op": "wait", "table": DB_NAME, "timeout": int(self.apply_timeout * 1000),
              "where": [["cur_cfg", "<", next_cfg]], "columns": ["cur_cfg"],
              "until": "==", "rows": []}
        try:
            self._transact_raw([op], idempotent=True,
                               timeout=self.apply_timeout + self.timeout)
        except OperationFailed as exc:
            if exc.fields.get("ovsdb_error") != "timed out":
                raise
            raise VswitchdNotApplied(
                "ovs-vswitchd is not running (the change was not applied)",
                hint="start Open vSwitch (ovs-ctl start); ovs-vswitchd applies the change "
                     "when it comes back", db=self.target,
            ) from exc

    def _transact_raw(self, ops: list[dict[str, Any]], *, idempotent: bool,
                      timeout: float | None = None) -> list[dict[str, Any]]:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ovsdb transact: %s", json.dumps(ops)[:2000])
        result = self.call("transact", [DB_NAME, *ops], timeout=timeout,
                           idempotent=idempotent)
        if not isinstance(result, list):
            raise OperationFailed(f"unexpected OVSDB reply: {str(result)[:200]}")
        for index, item in enumerate(result):
            if isinstance(item, dict) and item.get("error") is not None:
                raise _op_error(item, ops[index] if index < len(ops) else None)
        if len(result) < len(ops):
            raise OperationFailed(f"OVSDB answered {len(result)} of {len(ops)} operations")
        return result


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        text = str(error.get("error", "error"))
        if error.get("details"):
            text += f": {error['details']}"
        return text
    return str(error)


def _op_error(item: Mapping[str, Any], op: Mapping[str, Any] | None) -> OvsbridgeError:
    what = f'{op.get("op")} on {op.get("table")}' if op else "commit"
    return OperationFailed(f"OVSDB refused the transaction ({what}): {_error_text(item)}",
                           ovsdb_error=item.get("error"), ovsdb_details=item.get("details"),
                           ovsdb_op=op.get("op") if op else "commit")


# ----- one client per target, shared by every caller in the process -------------------------
_clients: dict[str, OvsdbClient] = {}
_clients_lock = threading.Lock()


def _forget_connections_in_child() -> None:
    # NOTE: a forked child (the daemon started from a CLI run) shares its parent's sockets;
    # two processes reading one JSON-RPC stream would steal each other's replies. The
    # child drops its copies (the parent's stay open) and connects afresh when it needs to.
    for found in _clients.values():
        for conn in found._idle:
            conn.close()
        found._idle = []
        found._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_connections_in_child)


def client(target: str | None = None) -> OvsdbClient:
    """The process's shared client for TARGET (its connections stay open between calls)."""
    key = target or default_target()
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = OvsdbClient(key)
        return found


# ----- the Open_vSwitch schema: the reads and writes ovsbridge needs -------------------------
BRIDGE_COLUMNS = ("_uuid", "name", "ports", "datapath_type", "external_ids", "other_config")
PORT_COLUMNS = ("_uuid", "name", "interfaces", "tag", "trunks", "vlan_mode", "qos",
                "external_ids")
IFACE_COLUMNS = ("_uuid", "name", "ofport", "type", "error", "mtu", "mtu_request",
                 "mac_in_use", "external_ids", "options", "link_state", "ingress_policing_rate",
                 "ingress_policing_burst")


def select_op(table: str, where: Sequence[list[Any]] = (),
              columns: Iterable[str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"op": "select", "table": table, "where": list(where)}
    if columns is not None:
        op["columns"] = list(columns)
    return op


def exists_op(table: str, where: Sequence[list[Any]], present: bool) -> dict[str, Any]:
    """A ``wait`` with timeout 0: the transaction aborts unless a row matches (or none does)."""
    op: dict[str, Any] = {"op": "wait", "table": table, "timeout": 0, "where": list(where),
                          "columns": ["_uuid"], "until": "!=" if present else "==",
                          "rows": []}
    return op


def is_failed_check(exc: OperationFailed) -> bool:
    """True when EXC is an ``exists_op`` that did not hold."""
    return exc.fields.get("ovsdb_op") == "wait" and exc.fields.get("ovsdb_error") == "timed out"


def full_read(db: OvsdbClient, bridge: str | None = None,
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(bridges, ports, interfaces): every row in one round trip; with BRIDGE, only that
    bridge's rows, in three (its row, its ports, their interfaces: the cost grows with its
    ports, not with the other bridges')."""
    if bridge is None:
        bridges, ports, ifaces = db.read([
            select_op("Bridge", (), BRIDGE_COLUMNS),
            select_op("Port", (), PORT_COLUMNS),
            select_op("Interface", (), IFACE_COLUMNS),
        ])
        return bridges, ports, ifaces
    (bridges,) = db.read([select_op("Bridge", [condition("name", "==", bridge)],
                                    BRIDGE_COLUMNS)])
    ports = _by_uuid(db, "Port", [u for b in bridges for u in as_set(b.get("ports", []))],
                     PORT_COLUMNS)
    ifaces = _by_uuid(db, "Interface",
                      [u for p in ports for u in as_set(p.get("interfaces", []))],
                      IFACE_COLUMNS)
    return bridges, ports, ifaces


def _by_uuid(db: OvsdbClient, table: str, uuids: Sequence[Any], columns: Sequence[str],
             ) -> list[dict[str, Any]]:
    """The rows of TABLE with these UUIDS (one select each, in one round trip)."""
    if not uuids:
        return []
    found = db.read([select_op(table, [condition("_uuid", "==", Uuid(str(u)))], columns)
                     for u in uuids])
    return [row for rows in found for row in rows]


def matching_read(db: OvsdbClient, match: Mapping[str, str],
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Only the rows of interfaces whose external_ids include MATCH, their ports and bridges.

    Filtered by ovsdb-server (``includes`` on the map), so the cost does not grow with the
    number of other ports. Bridge rows carry only the ports found here.
    """
    (ifaces,) = db.read([
        select_op("Interface", [condition("external_ids", "includes", dict(match))],
                  IFACE_COLUMNS)])
    if not ifaces:
        return [], [], []
    port_sets = db.read([
        select_op("Port", [condition("interfaces", "includes", [Uuid(i["_uuid"])])],
                  PORT_COLUMNS) for i in ifaces])
    ports = list({p["_uuid"]: p for rows in port_sets for p in rows}.values())
    if not ports:
        return [], [], ifaces
    owner_sets = db.read([
        select_op("Bridge", [condition("ports", "includes", [Uuid(p["_uuid"])])],
                  ("_uuid", "name", "datapath_type", "external_ids", "other_config"))
        for p in ports])
    bridges: dict[str, dict[str, Any]] = {}
    for port, owners in zip(ports, owner_sets, strict=True):
        for row in owners:
            entry = bridges.setdefault(row["_uuid"], {**row, "ports": []})
            entry["ports"].append(port["_uuid"])
    return list(bridges.values()), ports, ifaces


def bridge_facts(db: OvsdbClient, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(Bridge row, its own internal Interface row) or None; one round trip, O(1) in ports."""
    bridges, ifaces = db.read([
        select_op("Bridge", [condition("name", "==", name)],
                  ("_uuid", "name", "datapath_type")),
        select_op("Interface", [condition("name", "==", name)], ("mtu", "mtu_request")),
    ])
    if not bridges:
        return None
    return bridges[0], ifaces[0] if ifaces else {}


def port_uuids(db: OvsdbClient, names: Sequence[str]) -> list[Uuid]:
    """The Port row uuids of NAMES that exist (one round trip)."""
    if not names:
        return []
    found = db.read([select_op("Port", [condition("name", "==", n)], ("_uuid",))
                     for n in names])
    return [Uuid(r["_uuid"]) for rows in found for r in rows]


def remove_ports_ops(uuids: Iterable[str]) -> list[dict[str, Any]]:
    """Take ports out of whatever bridge holds them (OVSDB then drops Port and Interface)."""
    return [{"op": "mutate", "table": "Bridge",
             "where": [condition("ports", "includes", [Uuid(u)])],
             "mutations": [["ports", "delete", encode([Uuid(u)])]]} for u in uuids]


def add_ports_ops(bridge: str, ports: Sequence[tuple[str, Mapping[str, str], int | None]],
                  pin_mtu: int | None) -> list[dict[str, Any]]:
    """Interface + Port rows for each (name, external_ids, vlan), added to BRIDGE at once."""
    ops: list[dict[str, Any]] = [exists_op("Bridge", [condition("name", "==", bridge)], True)]
    names = []
    for index, (name, external_ids, vlan) in enumerate(ports):
        iface, port = f"iface{index}", f"port{index}"
        ops.append({"op": "insert", "table": "Interface", "uuid-name": iface,
                    "row": {"name": name, "external_ids": encode(dict(external_ids))}})
        row: dict[str, Any] = {"name": name, "interfaces": encode(NamedUuid(iface))}
        if vlan is not None:
            row["tag"] = vlan
        ops.append({"op": "insert", "table": "Port", "uuid-name": port, "row": row})
        names.append(NamedUuid(port))
    ops.append({"op": "mutate", "table": "Bridge", "where": [condition("name", "==", bridge)],
                "mutations": [["ports", "insert", encode(names)]]})
    if pin_mtu is not None:
        ops.append({"op": "update", "table": "Interface",
                    "where": [condition("name", "==", bridge)],
                    "row": {"mtu_request": pin_mtu}})
    return ops


def add_bridge_ops(name: str, datapath: str, mtu: int | None) -> list[dict[str, Any]]:
    """Bridge NAME with its internal port (MTU pinned), as ovs-vsctl add-br makes it."""
    iface: dict[str, Any] = {"name": name, "type": "internal"}
    if mtu is not None:
        iface["mtu_request"] = mtu
    return [
        exists_op("Bridge", [condition("name", "==", name)], False),
        {"op": "insert", "table": "Interface", "uuid-name": "iface", "row": iface},
        {"op": "insert", "table": "Port", "uuid-name": "port",
         "row": {"name": name, "interfaces": encode(NamedUuid("iface"))}},
        {"op": "insert", "table": "Bridge", "uuid-name": "bridge",
         "row": {"name": name, "ports": encode(NamedUuid("port")),
                 "datapath_type": datapath}},
        {"op": "mutate", "table": DB_NAME, "where": [],
         "mutations": [["bridges", "insert", encode([NamedUuid("bridge")])]]},
    ]


def remove_bridge_ops(uuid: str) -> list[dict[str, Any]]:
    return [{"op": "mutate", "table": DB_NAME, "where": [],
             "mutations": [["bridges", "delete", encode([Uuid(uuid)])]]}]
