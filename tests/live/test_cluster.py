"""proctor/live/cluster.py against the real Redis: leases, takeover, calls and their refusals."""
from __future__ import annotations

import json
import threading

import pytest

from proctor.live.cluster import Cluster
from tests.live.test_distributed import _redis
from tests.live.test_distributed import namespace as ns  # noqa: F401 - the fixture: a fresh key prefix, removed after


def test_lease_takeover_and_release(ns):
    r = _redis()
    a, b = Cluster(r, ns, "runtimeA"), Cluster(r, ns, "runtimeB")
    a.claim(7, 70)
    assert a.owner(7) == {"runtime": "runtimeA", "session": 70}
    assert a.renew({7: 70}) == [] and 0 < r.ttl(f"{ns}:owner:7") <= 10
    b.claim(7, 70)  # the student's frames now reach B
    assert a.renew({7: 70}) == [7]  # A learns it lost the student
    assert b.renew({7: 70}) == []
    a.release(7)  # not A's any more: nothing removed
    assert b.owner(7)["runtime"] == "runtimeB"
    r.delete(f"{ns}:owner:7")  # Redis restarted empty: the holder's renewal writes it again
    assert b.renew({7: 70}) == [] and b.owner(7)["runtime"] == "runtimeB"
    b.release(7)
    assert b.owner(7) is None


def test_student_lists_of_other_processes(ns):
    r = _redis()
    a, b = Cluster(r, ns, "runtimeA"), Cluster(r, ns, "runtimeB")
    a.publish_active([{"student_id": 1, "name": "One", "status": {"warnings": 2}}])
    b.publish_active([{"student_id": 2, "name": "Two", "status": {}}])
    assert [row["student_id"] for row in a.active_elsewhere()] == [2]
    assert [row["student_id"] for row in b.active_elsewhere()] == [1]
    r.set(f"{ns}:active:runtimeC", b"not json")
    assert [row["student_id"] for row in a.active_elsewhere()] == [2]


def test_a_call_is_answered_by_the_process_it_names(ns):
    r = _redis()
    a, b = Cluster(r, ns, "runtimeA"), Cluster(r, ns, "runtimeB")

    def serve_one():
        cmd = b.next_command(timeout_s=10)
        b.answer(cmd["id"], {"ok": True, "value": {"echo": cmd["args"], "command": cmd["command"]}})
    t = threading.Thread(target=serve_one)
    t.start()
    got = a.call("runtimeB", "status", student_id=5)
    t.join(10)
    assert got == {"ok": True, "value": {"echo": {"student_id": 5}, "command": "status"}}
    assert a.call("nobody", "status", timeout_s=1, student_id=5) is None  # no process answers: None, no hang


@pytest.mark.parametrize("raw", [b"not json", json.dumps({"id": "x1", "command": "shutdown", "args": {}}),
                                 json.dumps({"id": "../x", "command": "view", "args": {}}),
                                 json.dumps({"id": "x2", "command": "view", "args": []})])
def test_malformed_or_unknown_commands_are_dropped(ns, raw):
    r = _redis()
    b = Cluster(r, ns, "runtimeB")
    r.rpush(f"{ns}:cmd:runtimeB", raw)
    assert b.next_command(timeout_s=1) is None
