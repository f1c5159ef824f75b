"""system/ovsdb.py without OVS: the JSON codec, addresses, and error mapping against a fake
ovsdb-server (a thread on a unix socket in a temp dir, answering as scripted)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ovsbridge.errors import BadInput, EnvironmentProblem, OperationFailed, VswitchdNotApplied
from ovsbridge.system import ovsdb
from ovsbridge.system.ovsdb import NamedUuid, OvsdbClient, Uuid, decode, encode

U1 = "0b5e2c9a-1d4f-4c1e-9e0a-3b7a6f1d2c01"
U2 = "0b5e2c9a-1d4f-4c1e-9e0a-3b7a6f1d2c02"

Handler = Callable[[dict[str, Any], socket.socket], "dict[str, Any] | None"]


# ----- codec ---------------------------------------------------------------------------------
def test_atoms_pass_through() -> None:
    for atom in ("eth1", 42, 1.5, True, False, ""):
        assert encode(atom) == atom
        assert decode(atom) == atom


def test_uuid_and_named_uuid() -> None:
    assert encode(Uuid(U1)) == ["uuid", U1]
    assert encode(NamedUuid("port0")) == ["named-uuid", "port0"]
    assert decode(["uuid", U1]) == U1
    assert isinstance(decode(["uuid", U1]), Uuid)
    assert isinstance(decode(["named-uuid", "x"]), NamedUuid)
    assert not isinstance(encode("plain"), list)


def test_sets_and_maps() -> None:
    assert encode([1, 2]) == ["set", [1, 2]]
    assert encode(()) == ["set", []]
    assert encode([Uuid(U1), Uuid(U2)]) == ["set", [["uuid", U1], ["uuid", U2]]]
    assert encode({"a": "1", "b": "2"}) == ["map", [["a", "1"], ["b", "2"]]]
    assert encode({}) == ["map", []]
    raw = ["map", [["ovsbridge.owner", "ovsbridge"], ["k", "v"]]]
    assert decode(raw) == {"ovsbridge.owner": "ovsbridge", "k": "v"}
    assert decode(["set", [["uuid", U1], ["uuid", U2]]]) == [U1, U2]
    assert decode(["set", []]) == []


def test_round_trip_of_nested_values() -> None:
    value = {"ports": [Uuid(U1)], "ids": {"a": "b"}, "tag": 10}
    assert decode(encode(value)) == value


def test_a_one_element_set_may_come_bare() -> None:
    assert ovsdb.as_set(Uuid(U1)) == [U1]
    assert ovsdb.as_set([U1, U2]) == [U1, U2]
    assert ovsdb.optional([]) is None
    assert ovsdb.optional([5]) == 5
    assert ovsdb.optional(5) == 5


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        encode(object())


# ----- addresses -----------------------------------------------------------------------------
def test_targets() -> None:
    assert ovsdb.parse_target("unix:/run/x/db.sock") == (socket.AF_UNIX, "/run/x/db.sock")
    assert ovsdb.parse_target("tcp:127.0.0.1:6640") == (socket.AF_INET, ("127.0.0.1", 6640))
    assert ovsdb.parse_target("tcp:[::1]:6640") == (socket.AF_INET6, ("::1", 6640))
    for bad in ("ssl:1.2.3.4:6640", "unix:", "tcp:host", "db.sock", "tcp::6640"):
        with pytest.raises(BadInput):
            ovsdb.parse_target(bad)


def test_default_target_honours_ovs_rundir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVS_RUNDIR", raising=False)
    assert ovsdb.default_target() == "unix:/var/run/openvswitch/db.sock"
    monkeypatch.setenv("OVS_RUNDIR", "/tmp/ovs-private")
    assert ovsdb.default_target() == "unix:/tmp/ovs-private/db.sock"
    assert OvsdbClient().target == "unix:/tmp/ovs-private/db.sock"


# ----- a fake ovsdb-server -------------------------------------------------------------------
class FakeServer:
    """Accepts on a unix socket; each request goes to ``handler`` (None: no answer)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.stopped = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        decoder, buf = json.JSONDecoder(), ""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data.decode()
            while buf.strip():
                try:
                    msg, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                buf = buf.lstrip()[end:]
                if msg.get("method") == "echo" or "result" in msg:
                    self.requests.append(msg)
                    continue
                self.requests.append(msg)
                reply = self.handler(msg, conn)
                if reply is not None:
                    conn.sendall(json.dumps({"id": msg["id"], "error": None, **reply}).encode())

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Handler], FakeServer]]:
    servers: list[FakeServer] = []

    def start(handler: Handler) -> FakeServer:
        server = FakeServer(tmp_path / f"db{len(servers)}.sock", handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def ops_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    assert request["method"] == "transact"
    assert request["params"][0] == "Open_vSwitch"
    return list(request["params"][1:])


def answer_selects(rows: list[dict[str, Any]]) -> Handler:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        return {"result": [{"rows": rows} for _ in ops_of(msg)]}

    return handler


# ----- errors --------------------------------------------------------------------------------
def test_missing_socket_is_ovsdb_server_not_running(tmp_path: Path) -> None:
    client = OvsdbClient(f"unix:{tmp_path}/db.sock", timeout=1)
    with pytest.raises(EnvironmentProblem) as info:
        client.select("Bridge")
    assert info.value.message == f"ovsdb-server is not running at unix:{tmp_path}/db.sock"
    assert "ovs-ctl start" in (info.value.hint or "")
    assert "--db" in (info.value.hint or "")
    assert isinstance(info.value.__cause__, OSError)


def test_refused_socket_is_ovsdb_server_not_running(tmp_path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "db.sock"))  # bound, never listening: ECONNREFUSED
    try:
        with pytest.raises(EnvironmentProblem, match="is not running at"):
            OvsdbClient(f"unix:{tmp_path}/db.sock", timeout=1).select("Bridge")
    finally:
        dead.close()


def test_a_silent_server_does_not_answer(serve: Any) -> None:
    server = serve(lambda msg, conn: None)
    client = OvsdbClient(server.target, timeout=0.3)
    with pytest.raises(EnvironmentProblem) as info:
        client.select("Bridge")
    assert info.value.message == f"ovsdb-server at {server.target} does not answer"
    assert info.value.exit_code == 5


def test_a_refused_transaction_carries_ovsdb_error_and_details(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        return {"result": [{"uuid": ["uuid", U1]},
                           {"error": "constraint violation", "details": "duplicate name p1"}]}

    client = OvsdbClient(serve(handler).target, timeout=1)
    with pytest.raises(OperationFailed) as info:
        client.transact([{"op": "insert", "table": "Interface", "row": {"name": "p1"}}],
                        wait=False)
    assert "constraint violation" in info.value.message
    assert "duplicate name p1" in info.value.message
    assert info.value.fields["ovsdb_error"] == "constraint violation"
    assert info.value.exit_code == 1


def test_an_op_error_names_the_operation(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        return {"result": [{"error": "referential integrity violation", "details": "x"}]}

    client = OvsdbClient(serve(handler).target, timeout=1)
    with pytest.raises(OperationFailed, match=r"\(mutate on Bridge\)"):
        client.transact([{"op": "mutate", "table": "Bridge", "where": [], "mutations": []}],
                        wait=False)


def test_a_jsonrpc_error_is_an_operation_failure(serve: Any) -> None:
    client = OvsdbClient(serve(lambda msg, conn: {"result": None,
                                                  "error": "unknown database"}).target)
    with pytest.raises(OperationFailed, match="unknown database"):
        client.select("Bridge")


def test_wait_bumps_next_cfg_and_waits_for_cur_cfg(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        ops = ops_of(msg)
        if ops[0]["op"] == "wait":
            return {"result": [{}]}
        return {"result": [{"uuid": ["uuid", U1]}, {"count": 1},
                           {"rows": [{"next_cfg": 7}]}]}

    server = serve(handler)
    results = OvsdbClient(server.target).transact(
        [{"op": "insert", "table": "Interface", "row": {"name": "p1"}}])
    assert results == [{"uuid": U1}]
    first, second = (ops_of(r) for r in server.requests)
    assert first[1] == {"op": "mutate", "table": "Open_vSwitch", "where": [],
                        "mutations": [["next_cfg", "+=", 1]]}
    assert first[2]["op"] == "select" and first[2]["columns"] == ["next_cfg"]
    (wait,) = second
    assert wait["op"] == "wait" and wait["where"] == [["cur_cfg", "<", 7]]
    assert wait["until"] == "==" and wait["rows"] == [] and wait["timeout"] == 5000


def test_vswitchd_not_applying_is_its_own_environment_problem(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        if ops_of(msg)[0]["op"] == "wait":
            return {"result": [{"error": "timed out", "details": "\"wait\" timed out"}]}
        return {"result": [{"count": 1}, {"count": 1}, {"rows": [{"next_cfg": 3}]}]}

    client = OvsdbClient(serve(handler).target, apply_timeout=0.1)
    with pytest.raises(VswitchdNotApplied) as info:
        client.transact([{"op": "mutate", "table": "Bridge", "where": [], "mutations": []}])
    assert info.value.message == "ovs-vswitchd is not running (the change was not applied)"
    assert info.value.exit_code == 5
    assert isinstance(info.value.__cause__, OperationFailed)


def test_echo_requests_are_answered_and_skipped(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        conn.sendall(json.dumps({"method": "echo", "params": ["probe"], "id": "echo"}).encode())
        conn.sendall(json.dumps({"method": "update", "params": [None, {}], "id": None})
                     .encode())
        return {"result": [{"rows": [{"name": "br0"}]}]}

    server = serve(handler)
    assert OvsdbClient(server.target).select("Bridge") == [{"name": "br0"}]
    deadline = time.monotonic() + 5  # the fake reads our echo reply in its own thread
    while not any(m.get("id") == "echo" for m in server.requests):
        assert time.monotonic() < deadline, "the client never answered the echo"
        time.sleep(0.01)
    echo_replies = [m for m in server.requests if m.get("id") == "echo"]
    assert echo_replies == [{"id": "echo", "result": ["probe"], "error": None}]


def test_a_reply_in_small_pieces_with_multibyte_text(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> None:
        body = json.dumps({"id": msg["id"], "error": None,
                           "result": [{"rows": [{"name": "brü}ck\u00e9"}]}]},
                          ensure_ascii=False).encode()
        for i in range(len(body)):
            conn.sendall(body[i:i + 1])
        return None

    assert OvsdbClient(serve(handler).target).select("Bridge") == [{"name": "brü}ck\u00e9"}]


def test_a_broken_connection_is_replaced_once_for_a_read(serve: Any) -> None:
    calls = {"n": 0}

    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any] | None:
        calls["n"] += 1
        if calls["n"] == 2:
            conn.shutdown(socket.SHUT_RDWR)  # ovsdb-server restarted under us
            return None
        return {"result": [{"rows": []}]}

    server = serve(handler)
    client = OvsdbClient(server.target, timeout=1)
    assert client.select("Bridge") == []
    assert client.select("Bridge") == []  # second request broke, third on a new connection
    assert server.connections == 2


def test_a_sent_transaction_is_never_resent(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_RDWR)
        return None

    server = serve(handler)
    with pytest.raises(EnvironmentProblem, match="lost the connection"):
        OvsdbClient(server.target, timeout=1).transact([{"op": "comment", "comment": "x"}],
                                                       wait=False)
    assert len(server.requests) == 1


def test_the_connection_stays_open_between_calls(serve: Any) -> None:
    server = serve(answer_selects([]))
    client = OvsdbClient(server.target)
    for _ in range(5):
        client.select("Bridge")
    assert server.connections == 1


def test_threads_share_one_client(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        table = ops_of(msg)[0]["table"]
        return {"result": [{"rows": [{"table": table}]}]}

    client = OvsdbClient(serve(handler).target, timeout=5)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(30):
                table = f"T{n}-{i}"
                assert client.select(table) == [{"table": table}]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_one_shared_client_per_target() -> None:
    assert ovsdb.client("unix:/nonexistent/a.sock") is ovsdb.client("unix:/nonexistent/a.sock")
    assert ovsdb.client("unix:/nonexistent/a.sock") is not ovsdb.client("unix:/nonexistent/b")


# ----- the Open_vSwitch operations ovsbridge sends -----------------------------------------
def test_add_ports_is_one_transaction_with_named_rows() -> None:
    ops = ovsdb.add_ports_ops("br0", [("p1", {"k": "v"}, 10), ("p2", {}, None)], 1500)
    assert ops[0]["op"] == "wait" and ops[0]["until"] == "!="  # the bridge must exist
    inserts = [o for o in ops if o["op"] == "insert"]
    assert [o["table"] for o in inserts] == ["Interface", "Port", "Interface", "Port"]
    assert inserts[0]["row"] == {"name": "p1", "external_ids": ["map", [["k", "v"]]]}
    assert inserts[1]["row"] == {"name": "p1", "tag": 10,
                                 "interfaces": ["named-uuid", inserts[0]["uuid-name"]]}
    assert "tag" not in inserts[3]["row"]
    mutate = next(o for o in ops if o["op"] == "mutate")
    assert mutate["where"] == [["name", "==", "br0"]]
    assert mutate["mutations"] == [["ports", "insert", ["set", [
        ["named-uuid", inserts[1]["uuid-name"]], ["named-uuid", inserts[3]["uuid-name"]]]]]]
    assert ops[-1] == {"op": "update", "table": "Interface", "where": [["name", "==", "br0"]],
                       "row": {"mtu_request": 1500}}


def test_remove_ports_by_uuid_from_whichever_bridge() -> None:
    (op,) = ovsdb.remove_ports_ops([U1])
    assert op["where"] == [["ports", "includes", ["set", [["uuid", U1]]]]]
    assert op["mutations"] == [["ports", "delete", ["set", [["uuid", U1]]]]]


def test_matching_read_filters_on_the_server(serve: Any) -> None:
    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        ops = ops_of(msg)
        table = ops[0]["table"]
        if table == "Interface":
            return {"result": [{"rows": [{"_uuid": ["uuid", U1], "name": "p1",
                                          "external_ids": ["map", [["k", "v"]]]}]}]}
        if table == "Port":
            return {"result": [{"rows": [{"_uuid": ["uuid", U2], "name": "p1",
                                          "interfaces": ["uuid", U1]}]}]}
        return {"result": [{"rows": [{"_uuid": ["uuid", U1], "name": "br0"}]}]}

    server = serve(handler)
    bridges, ports, ifaces = ovsdb.matching_read(OvsdbClient(server.target), {"k": "v"})
    first = ops_of(server.requests[0])[0]
    assert first["where"] == [["external_ids", "includes", ["map", [["k", "v"]]]]]
    assert ops_of(server.requests[1])[0]["where"] == [
        ["interfaces", "includes", ["set", [["uuid", U1]]]]]
    assert bridges[0]["name"] == "br0" and bridges[0]["ports"] == [U2]
    assert ports[0]["name"] == "p1" and ifaces[0]["external_ids"] == {"k": "v"}


def test_a_read_of_one_bridge_selects_only_its_rows(serve: Any) -> None:
    u3 = U1[:-2] + "03"

    def handler(msg: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        ops = ops_of(msg)
        table = ops[0]["table"]
        if table == "Bridge":
            return {"result": [{"rows": [{"_uuid": ["uuid", u3], "name": "br0",
                                          "ports": ["uuid", U2]}]}]}
        if table == "Port":
            return {"result": [{"rows": [{"_uuid": ["uuid", U2], "name": "p1",
                                          "interfaces": ["uuid", U1]}]}]}
        return {"result": [{"rows": [{"_uuid": ["uuid", U1], "name": "p1"}]}]}

    server = serve(handler)
    bridges, ports, ifaces = ovsdb.full_read(OvsdbClient(server.target), "br0")
    wheres = [[(op["table"], op["where"]) for op in ops_of(r)] for r in server.requests]
    assert wheres == [[("Bridge", [["name", "==", "br0"]])],
                      [("Port", [["_uuid", "==", ["uuid", U2]]])],
                      [("Interface", [["_uuid", "==", ["uuid", U1]]])]]
    assert [b["name"] for b in bridges] == ["br0"]
    assert [p["name"] for p in ports] == ["p1"] and [i["name"] for i in ifaces] == ["p1"]


def test_a_read_of_a_missing_bridge_reads_nothing_more(serve: Any) -> None:
    server = serve(lambda msg, conn: {"result": [{"rows": []}]})
    assert ovsdb.full_read(OvsdbClient(server.target), "nosuch") == ([], [], [])
    assert len(server.requests) == 1


def test_a_forked_child_does_not_share_the_parents_connection(serve: Any) -> None:
    import os

    server = serve(answer_selects([]))
    shared = ovsdb.client(server.target)
    shared.select("Bridge")
    pid = os.fork()
    if pid == 0:  # the child: a fresh connection of its own, the parent's left alone
        code = 0 if shared._idle == [] and shared.select("Bridge") == [] else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shared.select("Bridge") == []  # the parent's connection still works
    assert server.connections == 2
