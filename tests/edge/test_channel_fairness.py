"""What made-up visitors cannot take from real customers' deliveries, and what a locked outbox
costs a decision (docs/channels.md, "What the outbox holds")."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from edge_module.channels import dispatcher
from edge_module.channels.dispatcher import ChannelDispatcher
from edge_module.channels.outbox import Claimed, Limits, Outbox
from edge_module.channels.sinks import Retry, WebhookSink, verify
from loadtest.webhook_receiver import SECRET, Receiver
from tests.core.test_channels import EMAIL_LATER as EMAIL
from tests.edge.test_channels import (
    CRM_KEY,
    PUSH,
    ROOT,
    Scripted,
    abandon,
    publish,
    readme_visit,
)
from tests.servers import running_edge, wait_for

FAR = 10**13  # a due moment long after the test


def rec(key: str, session: str = "", crm_id: str | None = None, due: int = FAR) -> dict:
    """A delivery record; with `crm_id`, addressed to that verified recipient."""
    return {"key": key, "channel": "email", "due_ms": due, "session_id": session,
            "crm_id": crm_id, "crm_id_verified": crm_id is not None}


def reasons(refused: list) -> list[str]:
    return [why for _record, why in refused]


# -- 1. room kept for verified recipients; per-session and per-recipient bounds ----------------


def test_made_up_sessions_cannot_take_the_room_kept_for_verified_recipients(tmp_path):
    d = ChannelDispatcher(Outbox(tmp_path / "o.sqlite3"), Scripted(), max_outbox=10,
                          anonymous_share=0.5, clock_ms=lambda: 0)
    refused = [why for n in range(250) for why in reasons(d.enqueue([rec(f"m{n}", f"made-{n}")]))]
    assert refused == ["outbox_full_anonymous"] * 245, "anonymous records beyond half the outbox"
    assert d.enqueue([rec("buyer", "real-1", crm_id="cus_1")]) == [], \
        "a verified recipient's delivery must find room the made-up sessions could not take"
    assert d.outbox.tally() == {"pending": 6, "anonymous": 5, "settled": 0}
    assert d.dropped == {"outbox_full_anonymous": 245}


def test_one_session_and_one_copied_signature_hold_only_a_few_waiting_deliveries(tmp_path):
    d = ChannelDispatcher(Outbox(tmp_path / "o.sqlite3"), Scripted(), max_outbox=1_000,
                          max_per_session=3, max_per_recipient=4, clock_ms=lambda: 0)
    assert reasons(d.enqueue([rec(f"s{n}", "one-session") for n in range(5)])) == \
        ["session_full"] * 2
    # a page's signed id copied into made-up sessions: at most 4 wait for that customer...
    copied = [rec(f"c{n}", f"copy-{n}", crm_id="cus_victim") for n in range(6)]
    assert reasons(d.enqueue(copied)) == ["recipient_full"] * 2
    # ...and every other customer still gets theirs
    assert d.enqueue([rec("other", "real-2", crm_id="cus_2")]) == []
    assert d.outbox.counts() == (3 + 4 + 1, 0)


def test_the_same_firing_again_is_neither_counted_nor_refused(tmp_path):
    d = ChannelDispatcher(Outbox(tmp_path / "o.sqlite3"), Scripted(), max_outbox=1,
                          anonymous_share=1, clock_ms=lambda: 0)
    assert d.enqueue([rec("k", "s")]) == [] and d.enqueue([rec("k", "s")]) == []
    assert d.queued == 1 and d.dropped == {}


PUSH_LATER = """\
id: browse-push
on: {type: custom, name: browse_abandon}
action: {content: cart-reminder, channel: push, template: push-discount, tier: queued, delay: 30m}
cap: {per_session: 1}
"""


def test_a_real_buyer_is_not_dropped_after_made_up_sessions_filled_the_edges_outbox(tmp_path):
    publish(tmp_path / "store", PUSH_LATER, EMAIL)
    with running_edge(tmp_path / "store", channel_max_outbox=10, crm_id_key=CRM_KEY,
                      channel_webhook_url="http://127.0.0.1:9/x",
                      channel_webhook_secret=SECRET) as edge:
        for n in range(15):  # a visitor making up sessions that fire a delayed push
            visit = abandon(f"made-{n}")
            visit["events"][-1]["name"] = "browse_abandon"
            visit["context"] = {"url": "/cart"}
            assert edge.decide(visit)[0] == 200
        assert edge.decide(abandon("buyer"))[0] == 200  # a signed customer's cart email
        channels = edge.health()["channels"]
        assert channels["dropped_by_reason"] == {"outbox_full_anonymous": 10}, channels
        assert (channels["pending"], channels["queued"]) == (6, 6), channels


# -- 2. set-aside records of verified recipients are not pushed out ---------------------------


def test_anonymous_set_aside_records_never_push_out_a_verified_recipients(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_set_aside=5)

    def refuse(record: dict, at: int) -> None:
        box.add([record])
        to = record["crm_id"] or ""
        box.set_aside(Claimed(record["key"], json.dumps(record), "email", 0, 0, to),
                      "refused: webhook answered 400", at)

    for n in range(5):
        refuse(rec(f"real-{n}", f"r{n}", crm_id=f"cus_{n}"), n)
    for n in range(60):
        refuse(rec(f"made-{n}", f"m{n}"), 100 + n)
    kept = sorted(record["key"] for record, _ in box.set_aside_records())
    assert kept == [f"real-{n}" for n in range(5)], "the customers' set-aside deliveries"
    refuse(rec("real-5", "r5", crm_id="cus_5"), 200)  # verified beyond the bound: oldest go
    kept = [record["key"] for record, _ in box.set_aside_records()]
    assert kept == [f"real-{n}" for n in range(1, 6)]


# -- 4. a locked outbox does not hold decisions, and loses nothing -----------------------------


def test_a_decision_does_not_wait_for_an_outbox_another_process_holds(tmp_path, free_port):
    publish(tmp_path / "store", PUSH)
    receiver = Receiver(free_port).start()
    try:
        with running_edge(tmp_path / "store", state_dir=tmp_path / "edge",
                          channel_webhook_url=receiver.url,
                          channel_webhook_secret=SECRET) as edge:
            other = sqlite3.connect(tmp_path / "edge" / "channels.sqlite3",
                                    isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # an operator's shell, a backup, a sibling
            try:
                status, answer, _ = edge.decide(readme_visit("held"))
                assert status == 200, answer
                channels = edge.health()["channels"]
                assert channels["waiting_writes"] == 1, channels  # in memory, in order
                assert channels["dropped"] == 0, channels
            finally:
                other.execute("ROLLBACK")
                other.close()
            wait_for(lambda: receiver.fired() == [(answer["decision_id"], "pricing-push")],
                     what="the push written and sent once the lock is let go")
            assert edge.health()["channels"]["waiting_writes"] == 0
    finally:
        receiver.stop()


def test_writes_that_waited_for_the_lock_keep_their_order(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Scripted(), clock_ms=lambda: 1_000)
    other = sqlite3.connect(tmp_path / "o.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    assert d.enqueue([rec("reminder", "bought", due=5_000)]) == []  # waits in memory
    assert d.cancel("bought") == 0  # the conversion: after the add, not before it
    other.execute("ROLLBACK")
    d.flush()
    assert (d.queued, d.cancelled, box.counts()) == (1, 1, (0, 0))


def test_the_writer_thread_writes_what_waited_and_a_stop_does_too(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Scripted(), clock_ms=lambda: 1_000)
    d.start()
    try:
        other = sqlite3.connect(tmp_path / "o.sqlite3", isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, other.execute, ("ROLLBACK",)).start()
        d.enqueue([rec("late", "s", due=FAR)])
        wait_for(lambda: d.queued == 1, what="the writer thread to add the record")
    finally:
        d.stop()
    assert box.counts() == (1, 0)


# -- 5. counted exactly, across processes; settled keys bounded --------------------------------


def test_the_bound_counts_what_waits_now_not_a_count_seconds_old(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Scripted(), max_outbox=2, anonymous_share=1,
                          clock_ms=lambda: 1_000)
    d.enqueue([rec("a", "s1", due=0), rec("b", "s2", due=0)])
    assert d.run_once() == 2 and box.counts() == (0, 0)
    assert d.enqueue([rec("c", "s3"), rec("d", "s4")]) == [], "sent records still counted"
    sibling = ChannelDispatcher(Outbox(tmp_path / "o.sqlite3"), Scripted(), max_outbox=2,
                                anonymous_share=1, clock_ms=lambda: 1_000)
    assert reasons(sibling.enqueue([rec("e", "s5")])) == ["outbox_full"]  # another worker's


def test_settled_keys_beyond_the_bound_are_forgotten_oldest_first(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.add([rec(f"k{n}", due=0) for n in range(10)])
    for n, item in enumerate(box.claim(1, 100, 1)):
        box.sent(item.key, 100 + n)
    assert box.purge(now_ms=200, keep_ms=10**9, max_keys=4) == 6
    assert box.tally()["settled"] == 4
    assert box.add([rec("k0", due=0)]) == 1 and box.add([rec("k9", due=0)]) == 0


# -- 6. what a receiver is told, and the operator's command ------------------------------------


def test_a_timestamp_too_long_for_int_is_a_failed_check_not_an_error():
    assert verify(SECRET.encode(), "9" * 5_000, "v1=00", b"{}") is False


@contextmanager
def receiver(port: int, respond: Callable[[Any, threading.Event], None]) -> Iterator[str]:
    """A loopback receiver of one request, answered by `respond(conn, done)` (`done` is
    set when the block ends, which then closes it): its URL."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        respond(conn, done)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/x"
    finally:
        done.set()
        server.close()
        thread.join(timeout=5)


@pytest.mark.parametrize("answer", [b"", b"HTTP/"])
def test_a_receiver_cut_off_by_the_deadline_is_not_said_to_have_hung_up(free_port, answer):
    def silent(conn: Any, done: threading.Event) -> None:
        conn.sendall(answer)
        done.wait(5)

    with receiver(free_port, silent) as url:
        result = WebhookSink(url, SECRET.encode(), timeout_s=0.5).send("k", b"{}")
        assert isinstance(result, Retry) and "deadline" in result.reason, result


def test_a_2xx_whose_chunked_body_the_deadline_cuts_is_delivered(free_port):
    def trickle(conn: Any, done: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not done.wait(0.2):  # a chunk every 0.2 s, never the last one
            try:
                conn.send(b"1\r\na\r\n")
            except OSError:
                break

    with receiver(free_port, trickle) as url:
        sink = WebhookSink(url, SECRET.encode(), timeout_s=0.6)
        assert sink.send("k", b"{}") is None, "the receiver answered 200: delivered"


def cli(state_dir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_module.channels", *args,
                           "--state-dir", str(state_dir)], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def test_the_operators_command_leaves_other_sqlite_files_alone(tmp_path):
    other = sqlite3.connect(tmp_path / "channels.sqlite3")
    other.execute("CREATE TABLE notes (x)")
    other.commit()
    other.close()
    listed = cli(tmp_path, "list")
    assert listed.returncode == 1 and "not a channel outbox" in listed.stderr, listed
    check = sqlite3.connect(tmp_path / "channels.sqlite3")
    tables = {row[0] for row in check.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"notes"}, "the file was made an outbox"
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete", "switched to WAL"


def test_a_set_aside_body_that_is_not_json_is_listed_and_requeued(tmp_path):
    box = Outbox(tmp_path / "channels.sqlite3")
    box.add([rec("k", "s", due=0)])
    box.set_aside(Claimed("k", "not json {", "email", 0, 0), "refused: 400", 5)
    listed = cli(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"reason": "refused: 400", "record": "not json {"}
    assert "1 delivery record(s)" in cli(tmp_path, "requeue").stdout
    assert box.counts() == (1, 0)


def test_an_outbox_written_before_the_tally_is_counted_and_addressed_when_opened(tmp_path):
    old = sqlite3.connect(tmp_path / "o.sqlite3")
    old.executescript("""
        CREATE TABLE outbox (key TEXT PRIMARY KEY, body TEXT NOT NULL, channel TEXT NOT NULL,
            session TEXT NOT NULL DEFAULT '', due_ms INTEGER NOT NULL,
            next_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
            settled_ms INTEGER);
        CREATE TABLE set_aside (key TEXT PRIMARY KEY, body TEXT NOT NULL,
            channel TEXT NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);""")
    waiting = [rec("v", "s1", crm_id="cus_1"), rec("a", "s2")]
    old.executemany("INSERT INTO outbox (key, body, channel, session, due_ms, next_ms) "
                    "VALUES (?, ?, 'email', ?, ?, ?)",
                    [(r["key"], json.dumps(r), r["session_id"], FAR, FAR) for r in waiting])
    old.execute("INSERT INTO outbox (key, body, channel, due_ms, next_ms, settled_ms) "
                "VALUES ('done', '', 'push', 0, 4611686018427387904, 5)")
    old.commit()
    old.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.tally() == {"pending": 2, "anonymous": 1, "settled": 1}
    [verified] = [c for c in box.claim(FAR, 10, 1) if c.key == "v"]
    assert verified.recipient == "cus_1"


# -- 6. what waits in memory is bounded; requeue meets the bounds; a stop counts its losses ----


def test_cancels_waiting_for_the_lock_count_toward_the_bound_and_merge_per_session(
        tmp_path, monkeypatch):
    monkeypatch.setattr(dispatcher, "MAX_WAITING", 3)
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Scripted(), clock_ms=lambda: 1_000)
    other = sqlite3.connect(tmp_path / "o.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    for _ in range(50):  # one outcome token replayed as conversions
        d.cancel("buyer")
    assert d.status()["waiting_writes"] == 1, "replays of one conversion each waited"
    d.cancel("other-1")
    d.cancel("other-2")
    d.cancel("other-3")  # beyond the bound: not kept
    assert d.status()["waiting_writes"] == 3
    assert reasons(d.enqueue([rec("r", "s")])) == ["outbox_busy"], \
        "cancels did not count toward the bound"
    other.execute("ROLLBACK")
    d.flush()
    assert d.status()["waiting_writes"] == 0


def test_requeue_meets_the_anonymous_share_and_the_per_session_bound(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    limits = Limits(pending=10, anonymous=5, per_session=2, per_recipient=32)
    box.add([rec(f"a{n}", f"s{n}", due=0) for n in range(5)] +
            [rec(f"same{n}", "one-session", crm_id="cus_1", due=0) for n in range(3)])
    for item in box.claim(1, 100, 1000):
        box.set_aside(item, "refused: receiver down", 1)
    assert box.admit([rec(f"b{n}", f"t{n}") for n in range(4)], limits) == (4, [])
    moved, kept = box.requeue(2, limits)
    assert (moved, kept) == (3, {"outbox_full_anonymous": 4, "session_full": 1}), \
        "requeue went past the outbox's bounds"
    assert box.tally()["anonymous"] == 5 and box.counts() == (7, 5)


def test_an_operators_requeue_says_what_stays_set_aside_and_why(tmp_path):
    box = Outbox(tmp_path / "channels.sqlite3")
    box.add([rec(f"a{n}", f"s{n}", due=0) for n in range(3)])
    for item in box.claim(1, 100, 1000):
        box.set_aside(item, "refused: receiver down", 1)
    env = {**os.environ, "EDGE_CHANNEL_MAX_OUTBOX": "4", "EDGE_CHANNEL_ANONYMOUS_SHARE": "0.5"}
    done = subprocess.run([sys.executable, "-m", "edge_module.channels", "requeue",
                           "--state-dir", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "2 delivery record(s) will be sent again" in done.stdout
    assert "1 delivery record(s) stay set aside" in done.stderr
    assert "1 outbox_full_anonymous" in done.stderr
    assert box.counts() == (2, 1)


def test_records_a_stop_cannot_write_are_counted_dropped(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Scripted(), clock_ms=lambda: 1_000)
    d.start()
    other = sqlite3.connect(tmp_path / "o.sqlite3", isolation_level=None,
                            check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # held through the stop
    try:
        d.enqueue([rec("r1", "s1"), rec("r2", "s2")])
        d.stop(timeout_s=0.2)
        status = d.status()
    finally:
        other.execute("ROLLBACK")
    assert status["dropped_by_reason"].get("stopped_waiting") == 2, status
    assert status["waiting_writes"] == 0


def test_a_reset_after_the_deadline_cut_a_2xx_is_still_delivered(free_port, monkeypatch):
    """Once the deadline has shut the socket, the receiver's next bytes are answered with a
    reset, and a read after that raises ECONNRESET instead of ending: CI saw that read as
    a failed exchange (a Retry), so a push the receiver had taken would go again."""
    import http.client

    real = http.client.HTTPResponse.read

    def reset_instead_of_end(self, amt=None):
        try:
            return real(self, amt)
        except http.client.IncompleteRead:
            raise ConnectionResetError(104, "Connection reset by peer") from None

    monkeypatch.setattr(http.client.HTTPResponse, "read", reset_instead_of_end)

    def one_chunk(conn: Any, done: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        done.wait(5)

    with receiver(free_port, one_chunk) as url:
        sink = WebhookSink(url, SECRET.encode(), timeout_s=0.5)
        assert sink.send("k", b"{}") is None, "the receiver answered 200: delivered"
