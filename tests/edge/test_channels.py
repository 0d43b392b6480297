"""Push, email and webhook deliveries from a real edge host: kept in the SQLite outbox before
the decision's state, sent by the edge's own timer to a signed webhook (a real receiver on
loopback that checks every signature) or a Kinesis stream (moto on loopback), at least once
under one idempotency key, across a receiver that is down and an edge killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import boto3
import pytest

from edge_module.channels.dispatcher import SENDERS, ChannelDispatcher
from edge_module.channels.outbox import Claimed, Outbox, OutboxError
from edge_module.channels.records import crm_signature, delivery_key, delivery_records
from edge_module.channels.sinks import Refused, Retry, WebhookSink, signature, verify
from edge_module.host.config import ConfigError, EdgeConfig
from loadtest.stack import free_port as pick_port
from loadtest.webhook_receiver import SECRET, Receiver
from tests.core.test_channels import EMAIL_LATER as EMAIL
from tests.core.test_channels import PUSH
from tests.factories import pack, snapshot_text
from tests.s3_server import running_s3
from tests.servers import (
    BUILD,
    ROOT,
    TRUSTED_KEYS,
    healthy,
    http,
    put_snapshot,
    running_edge,
    stop_process,
    wait_for,
)

EMAIL_LATER = EMAIL.replace("delay: 30m", "delay: 2s")  # the edge's timer, within a test


def readme_visit(session: str, **context: str) -> dict:
    """The README's pricing scenario: a page view, a scroll to 80 %, asked 3.2 s later."""
    t0 = int(time.time() * 1000) - 3200
    return {"session_id": session, "now_ms": t0 + 3200,
            "context": {"url": "/pricing", "device": "desktop", **context},
            "events": [{"type": "page_view", "ts_ms": t0, "url": "/pricing"},
                       {"type": "scroll", "ts_ms": t0 + 1000, "depth": 0.8, "y": 1400}]}


# an email goes only to a recipient the site signed for (EDGE_CRM_ID_KEY): `abandon` signs one
CRM_KEY = "ef" * 32


def signed_context(crm_id: str, key: str = CRM_KEY, **context: str) -> dict:
    sig = crm_signature(bytes.fromhex(key), crm_id, int(time.time()) + 600)
    return {**context, "crm_id": crm_id, "crm_id_sig": sig}


def abandon(session: str) -> dict:
    now = int(time.time() * 1000)
    return {"session_id": session, "now_ms": now,
            "context": signed_context(f"cus_{session}", url="/cart"),
            "events": [{"type": "page_view", "ts_ms": now - 500, "url": "/cart"},
                       {"type": "custom", "ts_ms": now - 100, "name": "cart_abandon"}]}


def publish(store: Path, *triggers: str) -> None:
    store.mkdir(parents=True, exist_ok=True)
    put_snapshot(store, snapshot_text(pack(*triggers)), 1)


# -- signatures and records ------------------------------------------------------------------


def test_a_signature_checks_only_with_the_secret_the_body_and_a_fresh_timestamp():
    secret, body, now = b"s" * 32, b'{"key":"d:t"}', 1_800_000_000
    sig = signature(secret, str(now), body)
    assert verify(secret, str(now), sig, body, now_s=now + 299)
    assert not verify(b"t" * 32, str(now), sig, body, now_s=now)  # another secret
    assert not verify(secret, str(now), sig, body + b" ", now_s=now)  # another body
    assert not verify(secret, str(now + 1), sig, body, now_s=now)  # another timestamp
    assert not verify(secret, str(now), sig, body, now_s=now + 301)  # a replay, later
    assert not verify(secret, str(now), sig, body, now_s=now - 301)  # from the future
    assert not verify(secret, None, sig, body) and not verify(secret, "x", sig, body)
    assert not verify(secret, "\u00b2", sig, body)  # a digit to str.isdigit, not to int()


def test_a_crm_id_is_passed_on_verified_only_with_the_sites_signature():
    key = bytes(range(32))
    delivery = {"trigger": "t", "channel": "push", "delay_ms": 0, "crm_id": "cus_42"}

    def record(crm_key, **extra):
        [rec] = delivery_records([{**delivery, **extra}], decision_id="d", session_id="s",
                                 revision="1", edge_id="e", now_ms=1000, crm_key=crm_key)
        return rec["crm_id"], rec["crm_id_verified"]

    assert record(key, crm_id_sig=crm_signature(key, "cus_42", 1)) == ("cus_42", True)
    assert record(key, crm_id_sig=crm_signature(key, "cus_43", 1)) == (None, False)
    assert record(key, crm_id_sig=crm_signature(key, "cus_42", 0)) == (None, False)  # expired
    forged = crm_signature(key, "cus_42", 1).replace("1.", "9.", 1)  # a later expiry, same MAC
    assert record(key, crm_id_sig=forged) == (None, False)
    assert record(key, crm_id_sig=crm_signature(key, "cus_42", 1)[2:]) == (None, False)  # bare MAC
    assert record(key) == (None, False)
    assert record(None) == ("cus_42", False)  # no key configured: passed on, unverified


def test_the_due_moment_counts_from_the_edges_clock_not_the_visitors():
    [rec] = delivery_records([{"trigger": "t", "channel": "email", "delay_ms": 30_000,
                               "send_at_ms": 1}], decision_id="d", session_id="s",
                             revision="1", edge_id="e", now_ms=5_000, crm_key=None)
    assert rec["due_ms"] == 35_000 and rec["key"] == delivery_key("s", "t", "d")


# -- the outbox --------------------------------------------------------------------------------


def _rec(key: str, due: int = 0) -> dict:
    return {"key": key, "channel": "push", "due_ms": due}


def test_the_outbox_keeps_a_key_once_leases_what_it_hands_out_and_survives_a_reopen(tmp_path):
    box = Outbox(tmp_path / "channels.sqlite3", max_set_aside=2)
    assert box.add([_rec("a"), _rec("b", 5_000)]) == 2
    assert box.add([_rec("a")]) == 0  # the same key again: kept once
    [a] = box.claim(1_000, 10, lease_ms=60_000)
    assert a.key == "a" and box.claim(1_000, 10, 60_000) == []  # leased; b not due
    assert box.next_due() == 5_000
    box.retry("a", 2_000, "receiver away")
    assert box.next_due() == 2_000
    box = Outbox(tmp_path / "channels.sqlite3", max_set_aside=2)  # a restart
    assert [c.key for c in box.claim(6_000, 10, 60_000)] == ["a", "b"]
    assert [c.attempts for c in box.claim(200_000, 10, 60_000)] == [1, 0]  # leases ended
    box.sent("a", 200_001)
    assert box.add([_rec("a")]) == 0 and box.counts() == (1, 0)  # sent, and still known
    assert box.purge(200_002 + 10, keep_ms=10) == 1 and box.add([_rec("a")]) == 1
    for n, key in enumerate(("a", "b", "c")):
        box.add([_rec(key)])
        box.set_aside(Claimed(key, json.dumps(_rec(key)), "push", 0, 0), "refused: 400", n)
    assert box.counts() == (0, 2)  # the oldest set-aside record went first
    assert [r["key"] for r, _ in box.set_aside_records()] == ["b", "c"]
    assert box.requeue(7) == (2, {}) and box.counts() == (2, 0)
    assert box.next_due() == 7


def test_a_lease_held_by_a_killed_process_is_released_at_once_not_at_its_end(tmp_path):
    path = tmp_path / "channels.sqlite3"
    box = Outbox(path)
    box.add([_rec("killed"), _rec("alive"), _rec("mine")])
    claimer = ("import sys; from pathlib import Path; from edge_module.channels.outbox import "
               "Outbox; Outbox(Path(sys.argv[1])).claim(1_000, 1, 120_000)")
    child = subprocess.run([sys.executable, "-c", claimer, str(path)], cwd=ROOT, check=True)
    assert child.returncode == 0  # it claimed "killed" for 120 s, and is gone
    with sqlite3.connect(path) as c:  # "alive" leased by a process that still runs
        c.execute("UPDATE outbox SET next_ms = 121000, owner = ? WHERE key = 'alive'",
                  (os.getppid(),))
    [mine] = box.claim(1_000, 1, 120_000)
    assert mine.key == "mine" and box.claim(2_000, 10, 120_000) == []  # all leased
    assert box.release_orphans(2_000) == 1  # the dead claimer's record only
    assert [c.key for c in box.claim(2_000, 10, 120_000)] == ["killed"]
    box.sent("killed", 2_500)
    assert box.release_orphans(3_000, starting=True) == 1  # this process, restarted: its own
    assert [c.key for c in box.claim(3_000, 10, 120_000)] == ["mine"]
    assert box.claim(3_000, 10, 120_000) == []  # the live process keeps its lease


class Scripted:
    """A sink answering from a script (the sends a real receiver is tested with below)."""

    name = "scripted"

    def __init__(self, *results) -> None:
        self.results = list(results)
        self.sent: list[str] = []

    def send(self, key: str, body: bytes):
        self.sent.append(key)
        return self.results.pop(0) if self.results else None


def test_retries_back_off_and_refusals_or_too_many_tries_are_set_aside(tmp_path):
    now = [10_000]
    box = Outbox(tmp_path / "o.sqlite3")
    sink = Scripted(Retry("503"), Retry("503"), None)
    d = ChannelDispatcher(box, sink, backoff_base_s=1.0, backoff_max_s=4.0,
                          clock_ms=lambda: now[0])
    d.enqueue([_rec("k")])
    for _ in range(3):
        d.run_once()
        due = box.next_due()
        now[0] = due if due is not None else now[0]
    assert sink.sent == ["k", "k", "k"] and d.delivered == 1 and d.retried == 2
    assert box.counts() == (0, 0)

    refusing = ChannelDispatcher(box, Scripted(Refused("webhook answered 400")),
                                 clock_ms=lambda: now[0])
    refusing.enqueue([_rec("r")])
    refusing.run_once()
    assert refusing.dropped == {"refused": 1} and box.counts() == (0, 1)

    tiring = ChannelDispatcher(box, Scripted(*[Retry("away")] * 5), max_attempts=3,
                               backoff_base_s=0.001, backoff_max_s=0.001,
                               clock_ms=lambda: now[0])
    tiring.enqueue([_rec("g")])
    for _ in range(3):
        now[0] += 10
        tiring.run_once()
    assert tiring.dropped == {"gave_up": 1} and box.counts() == (0, 2)


def test_webhook_urls_must_be_https_except_to_this_machine(tmp_path):
    base = {"state_dir": tmp_path, "channel_webhook_secret": SECRET}
    with pytest.raises(ConfigError, match="https"):
        EdgeConfig(channel_webhook_url="http://hooks.example.com/x", **base)
    with pytest.raises(ConfigError, match="one sink"):
        EdgeConfig(channel_webhook_url="https://hooks.example.com/x",
                   channel_kinesis_stream="nudges", **base)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        EdgeConfig(channel_webhook_url="https://hooks.example.com/x", state_dir=tmp_path,
                   channel_webhook_secret="short")
    with pytest.raises(ConfigError, match="EDGE_CRM_ID_KEY"):
        EdgeConfig(crm_id_key="not hex", state_dir=tmp_path)
    EdgeConfig(channel_webhook_url="http://127.0.0.1:9/x", **base)


def test_the_wait_a_receiver_asks_for_is_kept_within_the_ceiling(tmp_path):
    now = [10_000]
    box = Outbox(tmp_path / "o.sqlite3")
    sink = Scripted(Retry("429", after_s=9.0), Retry("503", after_s=86_400.0), None)
    d = ChannelDispatcher(box, sink, backoff_base_s=1.0, backoff_max_s=30.0,
                          clock_ms=lambda: now[0])
    d.enqueue([_rec("k", due=now[0])])
    d.run_once()
    assert box.next_due() >= now[0] + 9_000  # not the 0.5-1 s of its own first step
    now[0] = box.next_due()
    d.run_once()
    assert box.next_due() <= now[0] + 30_000  # a day asked: the ceiling


def test_the_sink_passes_on_the_wait_a_receiver_asks_for():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Busy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(429)
            self.send_header("Retry-After", "12")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/x",
                           SECRET.encode())
        assert sink.send("k", b"{}") == Retry("webhook answered 429", after_s=12.0)
    finally:
        server.shutdown()
        server.server_close()


def test_a_receiver_that_refuses_its_signature_is_retried_not_dropped(free_port):
    receiver = Receiver(free_port, secret="another secret entirely, 32+ chars").start()
    try:
        sink = WebhookSink(receiver.url, SECRET.encode())
        assert sink.send("d:t", b"{}") == Retry("webhook answered 401")
        assert receiver.keys() == []
    finally:
        receiver.stop()


# -- a real edge host ---------------------------------------------------------------------------


def test_a_push_reaches_the_receiver_signed_once_and_never_the_page(tmp_path, free_port):
    publish(tmp_path / "store", PUSH)
    receiver = Receiver(free_port).start()
    try:
        with running_edge(tmp_path / "store", channel_webhook_url=receiver.url,
                          channel_webhook_secret=SECRET) as edge:
            status, answer, _ = edge.decide(readme_visit("visitor-1", crm_id="cus_42"))
            assert status == 200 and answer["actions"] == [] and "deliveries" not in answer
            wait_for(lambda: receiver.keys(), what="the push at the receiver")
            [call] = receiver.calls
            assert call.signed and call.key == call.body["key"]
            assert receiver.fired() == [(answer["decision_id"], "pricing-push")]
            body = call.body
            assert (body["channel"], body["template"], body["content"]) == \
                ("push", "push-discount", "discount-nudge-10")
            assert (body["session_id"], body["crm_id"], body["crm_id_verified"]) == \
                ("visitor-1", "cus_42", False)
            assert body["decided_ms"] <= body["due_ms"] <= body["decided_ms"] + 5
            # the receiver can report what the visitor did with it, as the page would
            edge.host.app.tokens.check(body["outcome_token"], "visitor-1",
                                       answer["decision_id"], "pricing-push", body["due_ms"])
            # the same visitor again: capped once per session, nothing more is sent
            assert edge.decide(readme_visit("visitor-1"))[0] == 200
            # the receiver records a call before the edge has settled it: its books next
            channels = wait_for(lambda: (c := edge.health()["channels"])["delivered"] and c,
                                what="the push settled")
            assert channels["queued"] == channels["delivered"] == 1
            assert (channels["dropped"], channels["pending"]) == (0, 0)
        assert len(receiver.calls) == 1
    finally:
        receiver.stop()


def test_without_a_sink_deliveries_are_counted_dropped(tmp_path):
    publish(tmp_path / "store", PUSH)
    with running_edge(tmp_path / "store") as edge:
        status, answer, _ = edge.decide(readme_visit("visitor-2"))
        assert status == 200 and answer["actions"] == [] and "deliveries" not in answer
        assert edge.health()["channels"]["dropped_by_reason"] == {"no_sink": 1}


def test_a_receiver_down_for_30_s_loses_nothing(tmp_path, free_port):
    publish(tmp_path / "store", PUSH, EMAIL_LATER)
    receiver = Receiver(free_port)  # not started: nothing listens on its port
    with running_edge(tmp_path / "store", channel_webhook_url=receiver.url,
                      channel_webhook_secret=SECRET, crm_id_key=CRM_KEY,
                      channel_backoff_base_s=0.25,
                      channel_backoff_max_s=2.0) as edge:
        expected = set()
        for n in range(6):
            answer = edge.decide(readme_visit(f"p-{n}") if n % 2 else abandon(f"e-{n}"))[1]
            expected.add((answer["decision_id"], "pricing-push" if n % 2 else "cart-email"))
        down_until = time.monotonic() + 30
        wait_for(lambda: edge.health()["channels"]["retried"] >= 6, what="retries")
        time.sleep(max(0.0, down_until - time.monotonic()))
        receiver.start()
        try:
            wait_for(lambda: set(receiver.fired()) == expected, timeout_s=30,
                     what="every delivery after the receiver came back")
            # the receiver records a call before the edge has settled it: its books next
            channels = wait_for(lambda: (c := edge.health()["channels"])["delivered"] == 6 and c,
                                what="every delivery settled")
            assert channels["dropped"] == 0 and channels["pending"] == 0
            assert sorted(receiver.fired()) == sorted(expected)  # each once
        finally:
            receiver.stop()


def test_deliveries_survive_an_edge_killed_with_sigkill(tmp_path):
    publish(tmp_path / "store", PUSH, EMAIL_LATER)
    receiver = Receiver(pick_port()).start()
    edge_port = pick_port()
    env = {**os.environ, "TRIGGERS_STORE": str(tmp_path / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(TRUSTED_KEYS), "EDGE_STATE_DIR": str(tmp_path / "edge"),
           "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm"), "EDGE_SERVER": "waitress",
           "EDGE_CACHE_DIR": str(BUILD / "cache"), "EDGE_CONTROL_URL": "",
           "EDGE_PORT": str(edge_port), "EDGE_CHANNEL_WEBHOOK_URL": receiver.url,
           "EDGE_CHANNEL_WEBHOOK_SECRET": SECRET, "EDGE_CHANNEL_BACKOFF_BASE_S": "0.2",
           "EDGE_CRM_ID_KEY": CRM_KEY}
    url = f"http://127.0.0.1:{edge_port}"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "edge_module.host.server"], env=env,
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: healthy(url) or proc.poll() is not None, what="the edge host to start")
        assert proc.poll() is None
        return proc

    proc = start()
    try:
        expected = set()
        for n in range(20):  # pushes due now, emails due in 2 s: the kill catches both
            push = n % 2 == 0
            status, answer, _ = http("POST", url + "/v1/decide",
                                     readme_visit(f"p-{n}") if push else abandon(f"e-{n}"))
            assert status == 200
            expected.add((answer["decision_id"], "pricing-push" if push else "cart-email"))
        proc.send_signal(signal.SIGKILL)  # no drain: whatever was not sent is in the outbox
        proc.wait(timeout=10)
        before_restart = set(receiver.fired())
        assert before_restart < expected  # the delayed emails had not gone yet
        proc = start()  # the same EDGE_STATE_DIR: the same outbox
        wait_for(lambda: set(receiver.fired()) == expected, timeout_s=30,
                 what="every delivery after the restart")
        keys = receiver.keys()
        assert len(set(keys)) == len(expected)  # one key per delivery
        assert len(keys) - len(set(keys)) <= SENDERS  # again: at most the sends in flight
        assert all(call.signed for call in receiver.calls)
    finally:
        stop_process(proc)
        receiver.stop()


def test_deliveries_land_on_a_kinesis_stream(tmp_path):
    publish(tmp_path / "store", PUSH)
    with running_s3() as moto:  # moto's server speaks Kinesis too
        kinesis = boto3.client("kinesis", endpoint_url=moto.endpoint, region_name="us-east-1")
        stream = f"nudges-{os.urandom(4).hex()}"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        with running_edge(tmp_path / "store", channel_kinesis_stream=stream,
                          channel_kinesis_endpoint=moto.endpoint) as edge:
            answer = edge.decide(readme_visit("k-1"))[1]
            wait_for(lambda: edge.health()["channels"]["delivered"] == 1, what="the put")
        shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=it)["Records"]
        [body] = [json.loads(r["Data"]) for r in records]
        assert (body["decision_id"], body["trigger"]) == (answer["decision_id"], "pricing-push")
        assert records[0]["PartitionKey"] == body["key"]




def test_the_documented_verification_recipe_accepts_our_calls_and_nothing_else():
    text = (ROOT / "docs" / "channels.md").read_text()
    start = text.index("```python\n", text.index("## Checking a webhook call")) + 10
    recipe: dict = {}
    exec(text[start:text.index("```", start)], recipe)  # noqa: S102 - our own documentation
    secret, body, now = SECRET.encode(), b'{"key":"d:t"}', str(int(time.time()))
    assert recipe["verify"](secret, now, signature(secret, now, body), body)
    assert not recipe["verify"](secret, now, signature(secret, now, body), body + b"x")
    stale = str(int(time.time()) - 301)
    assert not recipe["verify"](secret, stale, signature(secret, stale, body), body)


def test_the_documented_crm_signing_recipe_makes_signatures_the_edge_takes():
    text = (ROOT / "docs" / "channels.md").read_text()
    start = text.index("```python\n", text.index("- `crm_id` is the visitor's")) + 10
    recipe: dict = {}
    block = textwrap.dedent(text[start:text.rindex("\n", start, text.index("```", start))])
    exec(block, recipe)  # noqa: S102 - our own documentation (indented in its list item)
    key, now_ms = bytes(range(32)), int(time.time() * 1000)

    def verified(sig: str, at_ms: int = now_ms) -> bool:
        [rec] = delivery_records([{"trigger": "t", "channel": "email", "crm_id": "cus_9",
                                   "crm_id_sig": sig}], decision_id="d", session_id="s",
                                 revision="1", edge_id="e", now_ms=at_ms, crm_key=key)
        return rec["crm_id_verified"]

    sig = recipe["crm_id_sig"](key, "cus_9")
    assert verified(sig) and sig == crm_signature(key, "cus_9", int(sig.split(".")[0]))
    assert not verified(sig, at_ms=now_ms + 86_401_000)  # a day on: expired
    assert not verified(recipe["crm_id_sig"](b"x" * 32, "cus_9"))  # another key


def test_an_operator_lists_and_requeues_set_aside_deliveries(tmp_path):
    box = Outbox(tmp_path / "channels.sqlite3")
    box.add([_rec("d1:t")])
    box.set_aside(box.claim(0, 1, 1000)[0], "refused: webhook answered 400", 5)
    assert box.counts() == (0, 1)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edge_module.channels", *args,
                               "--state-dir", str(tmp_path)], capture_output=True, text=True,
                              cwd=ROOT, check=False)

    listed = cli("list")
    assert listed.returncode == 0
    [line] = listed.stdout.splitlines()
    assert json.loads(line) == {"reason": "refused: webhook answered 400",
                                "record": _rec("d1:t")}
    assert "1 delivery record(s)" in cli("requeue").stdout
    assert box.counts() == (1, 0) and [c.key for c in box.claim(10**13, 5, 1)] == ["d1:t"]
    missing = subprocess.run([sys.executable, "-m", "edge_module.channels", "list",
                              "--state-dir", str(tmp_path / "nowhere")], capture_output=True,
                             text=True, cwd=ROOT, check=False)
    assert missing.returncode == 1 and "no channel outbox" in missing.stderr


@pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry-on", "telemetry-off"])
def test_a_conversion_cancels_the_visitors_waiting_deliveries(tmp_path, free_port, telemetry):
    publish(tmp_path / "store", EMAIL_LATER)
    receiver = Receiver(free_port).start()
    # with telemetry its control plane is away (it does not matter here); without it, the
    # conversion is still taken for what it cancels, and nothing else is
    extra = {"control_url": "http://127.0.0.1:9", "token": "t"} if telemetry else {}
    try:
        with running_edge(tmp_path / "store", channel_webhook_url=receiver.url,
                          channel_webhook_secret=SECRET, crm_id_key=CRM_KEY, **extra) as edge:
            bought = edge.decide(abandon("bought"))[1]
            kept = edge.decide(abandon("left"))[1]
            status, _, _ = http("POST", edge.url + "/v1/outcome", {
                "session_id": "bought", "type": "conversion",
                "decision_id": bought["decision_id"], "outcome_token": bought["outcome_token"]})
            assert status == 200
            status, answer, _ = http("POST", edge.url + "/v1/outcome", {
                "session_id": "left", "type": "impression",
                "decision_id": kept["decision_id"], "outcome_token": kept["outcome_token"]})
            assert status == (200 if telemetry else 503), answer
            # the edge's own books, not the receiver's: a call is seen there before the
            # edge has settled it
            wait_for(lambda: edge.health()["channels"]["delivered"] == 1,
                     what="the kept email delivered and settled")
            assert receiver.fired() == [(kept["decision_id"], "cart-email")]
            channels = edge.health()["channels"]
            assert (channels["cancelled"], channels["delivered"], channels["pending"]) == \
                (1, 1, 0)
    finally:
        receiver.stop()


def test_the_outbox_is_bounded_against_made_up_visitors(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Scripted(), max_outbox=3, anonymous_share=1, clock_ms=lambda: 0)
    for n in range(5):
        d.enqueue([_rec(f"k{n}", due=10**12)])  # due much later: they pile up
    assert box.counts() == (3, 0) and d.dropped == {"outbox_full": 2}
    assert d.status()["queued"] == 3


# -- what a review found -----------------------------------------------------------------------


def test_a_replayed_state_token_sends_the_same_push_once(tmp_path, free_port):
    # client mode: the visitor carries the state (and its caps) and may send an old one again
    publish(tmp_path / "store", PUSH)
    receiver = Receiver(free_port).start()
    keys = "k1:" + "ab" * 32
    try:
        with running_edge(tmp_path / "store", session_store="client", state_token_keys=keys,
                          channel_webhook_url=receiver.url,
                          channel_webhook_secret=SECRET) as edge:
            t0 = int(time.time() * 1000) - 3200
            first = edge.decide({"session_id": "r-1", "now_ms": t0 + 1000,
                                 "context": {"url": "/pricing"},
                                 "events": [{"type": "page_view", "ts_ms": t0, "url": "/pricing"},
                                            {"type": "scroll", "ts_ms": t0 + 900, "depth": 0.8,
                                             "y": 1400}]})[1]
            assert "deliveries" not in first
            for _ in range(3):  # the same token: the push fires again in each answer...
                edge.decide({"session_id": "r-1", "now_ms": t0 + 3200,
                             "state_token": first["state_token"]})
            wait_for(lambda: edge.health()["channels"]["pending"] == 0 and receiver.keys(),
                     what="the outbox settled")
            assert len(receiver.keys()) == 1  # ...and is one delivery: the same firing's key
            assert edge.health()["channels"]["queued"] == 1
    finally:
        receiver.stop()


def test_a_signature_with_foreign_characters_is_a_wrong_signature_not_an_error(tmp_path):
    publish(tmp_path / "store", PUSH)
    key = "cd" * 32
    with running_edge(tmp_path / "store", crm_id_key=key, channel_webhook_url="http://127.0.0.1:9/x",
                      channel_webhook_secret=SECRET) as edge:
        for sig in ("é" * 64, "é", "😀" * 16):
            status, answer, _ = edge.decide(readme_visit(f"s-{len(sig)}", crm_id="cus_42",
                                                         crm_id_sig=sig))
            assert status == 200, answer
        status, answer, _ = edge.decide(readme_visit("s-long", crm_id_sig="x" * 5000))
        assert status == 400 and answer["error"]["field"] == "context.crm_id_sig"
        assert edge.health()["channels"]["dropped_by_reason"] == {}


def test_an_email_without_a_signed_recipient_is_not_sent_when_the_site_signs_its_ids(tmp_path):
    email_now = EMAIL_LATER.replace("tier: queued, delay: 2s", "tier: immediate")
    publish(tmp_path / "store", email_now)
    key = bytes.fromhex("cd" * 32)
    with running_edge(tmp_path / "store", crm_id_key=key.hex(),
                      channel_webhook_url="http://127.0.0.1:9/x",
                      channel_webhook_secret=SECRET) as edge:
        edge.decide({**abandon("anon"), "context": {"url": "/cart", "crm_id": "cus_1"}})
        signed = {"url": "/cart", "crm_id": "cus_2",
                  "crm_id_sig": crm_signature(key, "cus_2", int(time.time()) + 60)}
        edge.decide({**abandon("known"), "context": signed})
        channels = edge.health()["channels"]
        assert channels["dropped_by_reason"] == {"unverified_recipient": 1}
        assert channels["queued"] == 1


def test_without_the_sites_key_no_email_is_sent_to_a_visitors_crm_id(tmp_path, free_port):
    """The security model: an email without a verified id is not sent, key or not."""
    email_now = EMAIL_LATER.replace("tier: queued, delay: 2s", "tier: immediate")
    publish(tmp_path / "store", email_now, PUSH)
    receiver = Receiver(free_port).start()
    try:
        with running_edge(tmp_path / "store", channel_webhook_url=receiver.url,
                          channel_webhook_secret=SECRET) as edge:  # no EDGE_CRM_ID_KEY
            visit = {**abandon("victim"), "context": {"url": "/cart",
                                                      "crm_id": "cus_victim@example.com"}}
            assert edge.decide(visit)[0] == 200
            assert edge.decide(readme_visit("pusher", crm_id="cus_42"))[0] == 200
            wait_for(lambda: edge.health()["channels"]["delivered"] == 1, what="the push")
            assert [c.body["channel"] for c in receiver.calls] == ["push"]  # no email
            assert edge.health()["channels"]["dropped_by_reason"] == \
                {"unverified_recipient": 1}
    finally:
        receiver.stop()


class Slow:
    """A sink that takes `seconds` for keys starting with "slow" and answers others at once."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.done: list[str] = []

    def send(self, key: str, body: bytes):
        if key.startswith("slow"):
            time.sleep(self.seconds)
        self.done.append(key)


def test_a_slow_send_holds_only_itself(tmp_path):
    d = ChannelDispatcher(Outbox(tmp_path / "o.sqlite3"), Slow(3.0))
    d.start()
    try:
        now = int(time.time() * 1000)
        d.enqueue([_rec("slow-1", due=now), _rec("slow-2", due=now)])
        time.sleep(0.3)
        d.enqueue([_rec("fast", due=now)])
        wait_for(lambda: "fast" in d.sink.done, what="the fast delivery")
        assert d.sink.done == ["fast"]  # both slow sends still running
    finally:
        d.stop()


@pytest.mark.parametrize("at_once", [b"", b"HTTP/1.1 200 OK\r\n"])
def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline(free_port, at_once):
    """Cut within its headers, a 200 is no answer: http.client took the headers read by
    then as complete, and the delivery counted as sent."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", free_port))
    server.listen()
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(at_once)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[len(at_once):]:
            if stop.wait(0.3):  # a byte every 0.3 s: each read is well within the timeout
                break
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{free_port}/x", SECRET.encode(), timeout_s=1.0)
        assert isinstance(sink.send("k", b"{}"), Retry)  # not a 12 s wait for an answer
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)


def test_a_delivery_found_too_long_past_due_is_set_aside_not_sent(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    sink = Scripted()
    day = 86_400_000
    d = ChannelDispatcher(box, sink, clock_ms=lambda: 3 * day)
    d.enqueue([_rec("stale", due=0), _rec("fresh", due=3 * day - 1000)])
    d.run_once()
    assert sink.sent == ["fresh"] and d.dropped == {"expired": 1}


def test_a_damaged_outbox_is_moved_aside_and_the_edge_still_starts(tmp_path):
    from edge_module.host.edge_host import make_dispatcher

    state = tmp_path / "edge"
    state.mkdir()
    (state / "channels.sqlite3").write_bytes(b"this is not a database" * 100)
    config = EdgeConfig(state_dir=state, channel_webhook_url="http://127.0.0.1:9/x",
                        channel_webhook_secret=SECRET)
    d = make_dispatcher(config)
    d.enqueue([_rec("k", due=10**13)])
    assert d.status()["pending"] == 1
    assert [p.name.split(".damaged-")[0] for p in state.glob("*.damaged-*")] == \
        ["channels.sqlite3"]


def test_webhook_urls_with_a_bad_port_or_credentials_are_refused(tmp_path):
    base = {"state_dir": tmp_path, "channel_webhook_secret": SECRET}
    with pytest.raises(ConfigError, match="port"):
        EdgeConfig(channel_webhook_url="https://hooks.example.com:99999/x", **base)
    with pytest.raises(ConfigError, match="no credentials"):
        EdgeConfig(channel_webhook_url="https://u:p@hooks.example.com/x", **base)


def test_a_late_answer_cannot_undo_a_settled_record_nor_another_processes_lease(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.add([_rec("k"), _rec("mine")])
    box.claim(1_000, 10, 120_000)
    box.sent("k", 1_500)  # another send of it got through first
    box.retry("k", 2_000, "503 from a slow first send")  # ...then the slow one answered
    box.set_aside(Claimed("k", "{}", "push", 0, 0), "refused: 400", 2_000)
    assert box.claim(10**9, 10, 1)[0].key == "mine" and box.next_due() is not None
    assert box.counts() == (1, 0)  # k stays sent: not back, not set aside
    with sqlite3.connect(tmp_path / "o.sqlite3") as c:  # "mine" taken over by a sibling
        c.execute("UPDATE outbox SET owner = ? WHERE key = 'mine'", (os.getppid(),))
    box.retry("mine", 5, "a late answer here")
    assert box.next_due() == 10**9 + 1  # the sibling's lease stands


def test_a_clock_step_past_the_lease_does_not_send_a_record_twice_at_once(tmp_path):
    now = [int(time.time() * 1000)]
    d = ChannelDispatcher(Outbox(tmp_path / "o.sqlite3"), Slow(1.5), lease_s=1.0,
                          clock_ms=lambda: now[0])
    d.start()
    try:
        d.enqueue([_rec("slow-1", due=now[0])])
        wait_for(lambda: d._inflight_keys, what="the send to start")
        now[0] += 120_000  # the wall clock steps past the lease while it is being sent
        d._wake.set()
        wait_for(lambda: d.delivered == 1, what="the send settled")
        assert d.sink.done == ["slow-1"]
    finally:
        d.stop()


def test_a_stop_settles_the_sends_in_flight_instead_of_sending_them_again(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    d = ChannelDispatcher(box, Slow(0.5))
    d.start()
    d.enqueue([_rec("slow-1", due=int(time.time() * 1000))])
    wait_for(lambda: d._inflight_keys, what="the send to start")
    d.stop()
    assert d.sink.done == ["slow-1"] and d.delivered == 1 and box.counts() == (0, 0)


def test_a_settle_the_outbox_refused_is_tried_again_not_sent_again(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    sink = Scripted()
    d = ChannelDispatcher(box, sink, clock_ms=lambda: 1_000)
    d._senders = __import__("concurrent.futures").futures.ThreadPoolExecutor(1)
    real_sent, failures = box.sent, [OutboxError("database is locked")]

    def sent(key, now_ms):
        if failures:
            raise failures.pop()
        real_sent(key, now_ms)
    box.sent = sent
    d.enqueue([_rec("k")])
    d._pump()  # claims and sends
    d._senders.shutdown(wait=True)
    with pytest.raises(OutboxError):
        d._pump()  # the settle fails: the answer is kept
    d._pump()
    assert sink.sent == ["k"] and d.delivered == 1 and box.counts() == (0, 0)


def test_records_long_past_due_are_set_aside_in_bulk_ahead_of_fresh_ones(tmp_path):
    now = 10 * 86_400_000
    box = Outbox(tmp_path / "o.sqlite3")
    sink = Scripted()
    d = ChannelDispatcher(box, sink, max_age_s=60, clock_ms=lambda: now)
    d.enqueue([_rec(f"old-{n}", due=1_000 + n) for n in range(2_500)] +
              [_rec("fresh", due=now - 1)])
    assert d.run_once() == 1 and sink.sent == ["fresh"]
    assert d.dropped == {"expired": 2_500} and box.counts() == (0, 2_500)


def test_settled_keys_are_forgotten_in_chunks_and_kept_for_the_session_ttl(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.add([_rec(f"k{n}") for n in range(4_500)])
    for item in box.claim(1, 10_000, 1):
        box.sent(item.key, 2)
    assert box.purge(now_ms=100, keep_ms=10) == 4_500 and box.add([_rec("k1")]) == 1
    d = ChannelDispatcher(box, Scripted(), max_age_s=60, keep_keys_s=1_800)
    assert d.keep_keys_ms == 1_800_000  # a state token replayed within its TTL finds its key


def test_a_locked_outbox_is_waited_for_at_start_not_moved_aside(tmp_path):
    """A sibling worker opening (upgrading) the file, or a backup, holds its lock longer
    than the busy timeout: the starting process waits, and the file keeps its records."""
    from edge_module.host.edge_host import _open_outbox

    path = tmp_path / "channels.sqlite3"
    Outbox(path).add([_rec("waiting", due=10**13)])
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(2.5, holder.execute, ("ROLLBACK",)).start()  # past the 2 s busy timeout
    box = _open_outbox(path, 10_000, wait_s=60)
    assert box.counts() == (1, 0), "the starting process lost the outbox's records"
    assert list(tmp_path.glob("*.damaged-*")) == [], "a locked outbox was moved aside"
    holder.close()


def test_listing_set_aside_deliveries_never_takes_the_write_lock(tmp_path):
    box = Outbox(tmp_path / "channels.sqlite3")
    box.add([_rec("d1:t")])
    box.set_aside(box.claim(0, 1, 1000)[0], "refused: webhook answered 400", 5)
    holder = sqlite3.connect(tmp_path / "channels.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a decision's write, a sibling's bulk work
    try:
        listed = subprocess.run([sys.executable, "-m", "edge_module.channels", "list",
                                 "--state-dir", str(tmp_path)], capture_output=True, text=True,
                                cwd=ROOT, check=False)
    finally:
        holder.execute("ROLLBACK")
    assert listed.returncode == 0, f"list needed the write lock: {listed.stderr}"
    assert [json.loads(line)["record"]["key"] for line in listed.stdout.splitlines()] == ["d1:t"]


_CONVERTING_WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from edge_module.channels.dispatcher import ChannelDispatcher
    from edge_module.channels.outbox import Outbox
    from tests.edge.test_channels import Scripted

    d = ChannelDispatcher(Outbox(Path(sys.argv[1])), Scripted(), clock_ms=lambda: 1_000)
    record = {"key": "reminder", "channel": "push", "session_id": "buyer", "due_ms": 60_000,
              "decided_ms": 1_000}
    print("open", flush=True)
    sys.stdin.readline()  # the outbox is locked now
    assert d.enqueue([record]) == []
    print(d.status()["waiting_writes"], flush=True)  # the add waits in this process's memory
    sys.stdin.readline()  # the other worker's cancel is written first
    d.flush()
    print(json.dumps(d.status()), flush=True)
""")


def test_a_conversion_cancels_a_reminder_still_waiting_in_another_workers_memory(tmp_path):
    """Worker A's decision and worker B's conversion both wait in memory for the lock; B
    writes first: A's reminder, added later, is still cancelled (the order across
    processes does not matter)."""
    path = tmp_path / "channels.sqlite3"
    worker_b = ChannelDispatcher(Outbox(path), Scripted(), clock_ms=lambda: 2_000)
    worker_a = subprocess.Popen([sys.executable, "-c", _CONVERTING_WORKER, str(path)], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert worker_a.stdout.readline().strip() == "open"
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # a backup, a sibling's bulk work
        worker_a.stdin.write("\n")
        worker_a.stdin.flush()
        assert worker_a.stdout.readline().strip() == "1", "worker A's add did not wait"
        assert worker_b.cancel("buyer") == 0 and worker_b.status()["waiting_writes"] == 1
        holder.execute("ROLLBACK")
        worker_b.flush()  # the cancel lands first: nothing of the buyer's in the file yet
        worker_a.stdin.write("\n")
        worker_a.stdin.flush()
        status = json.loads(worker_a.stdout.readline())
    finally:
        worker_a.kill()
        worker_a.wait()
    assert (status["queued"], status["cancelled"]) == (0, 1), status
    assert Outbox(path).counts() == (0, 0), "the converted visitor's reminder still waits"
