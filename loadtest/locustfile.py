"""Locust scenarios against an edge host: `locust -f loadtest/locustfile.py --host URL [CLASS]`.

Two user classes; name one on the command line (or pick in the web UI with
`--class-picker`), otherwise Locust runs both by their weights (9 visitors to 1 flooder):

- `VisitorUser`: a visitor's journey (landing -> product -> pricing -> cart -> checkout,
  or abandonment) as a browser SDK sends it: events batched and flushed every second (at
  most 20 a batch), scroll and mouse events sampled, hovers, form fields, custom events
  (add_to_cart, cart_abandon, purchase), a device mix and a time-of-day mix in the context,
  and a call back at `next_check_ms` whenever the edge announces one. When such a call
  back gets an action, the timing error (response arrival minus next_check_ms, both on
  this machine's clock) is recorded.
- `ThroughputUser`: the max-throughput scenario: realistic 20-event batches (see
  `visitors.throughput_body`) in a tight loop, no think time.

With `--report-outcomes` (or LOADTEST_REPORT_OUTCOMES=true; `./build.sh loadtest` sets
it whenever the control plane collects telemetry) a visitor reports what became of each
action it got, as the site's SDK does (`POST /v1/outcome`): an impression, then a click
(15 %) or a dismissal (35 %), and a conversion for a third of the clicks. Off by default:
an edge without a control plane answers outcomes 503.

At the end the master (or the only process) prints a summary: decisions per second,
client-side and server-side latency (the response's own `latency_us`), the timing error
of timed triggers and the share of requests answered 2xx; `--summary-json PATH` (or
LOADTEST_SUMMARY_JSON) also writes it as JSON. With `--processes N` the workers send
their samples to the master with their regular reports.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.env import Environment

from edge_module.replay_client import next_call_back
from loadtest.summary import Samples, summarize, write_summary
from loadtest.visitors import FLUSH_MS, MAX_BATCH, journey, throughput_body, visitor_context

DECIDE = "/v1/decide"
OUTCOME = "/v1/outcome"
HEADERS = {"Content-Type": "application/json"}
samples = Samples()  # this process's samples (workers send theirs to the master)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--report-outcomes", action="store_true", default=False,
                        env_var="LOADTEST_REPORT_OUTCOMES",
                        help="POST /v1/outcome for each action received (the edge must "
                             "have a control plane to take them)")
    parser.add_argument("--batch-rate", type=float, default=0.0, env_var="LOADTEST_BATCH_RATE",
                        help="ThroughputUser: batches per second per user (0: no pause; "
                             "users x rate = the offered load)")
    parser.add_argument("--summary-json", default="", env_var="LOADTEST_SUMMARY_JSON",
                        help="also write the end-of-run summary to this JSON file")


def now_ms() -> float:
    return time.time() * 1000


@events.request.add_listener
def _on_request(name: str, response_time: float, response: Any = None,
                exception: Any = None, **_: Any) -> None:
    status = getattr(response, "status_code", 0) or 0
    samples.count(status if exception is None or status else 0)
    if name.startswith(DECIDE) and 200 <= status < 300:
        samples.client_ms.append(response_time)
    elif name == OUTCOME:
        samples.outcomes_sent += 1
        samples.outcomes_ok += 200 <= status < 300


@events.report_to_master.add_listener
def _to_master(client_id: str, data: dict[str, Any]) -> None:
    data["edge_samples"] = samples.drain()


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict[str, Any]) -> None:
    if "edge_samples" in data:
        samples.merge(data["edge_samples"])


@events.quitting.add_listener
def _summary(environment: Environment, **_: Any) -> None:
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return
    summary = summarize(environment, samples)
    print(json.dumps(summary, indent=1))
    path = getattr(environment.parsed_options, "summary_json", "")
    if path:
        write_summary(path, summary)


class EdgeUser(FastHttpUser):
    abstract = True
    connection_timeout = 10.0
    network_timeout = 10.0

    def decide(self, body: bytes, label: str) -> dict[str, Any] | None:
        """POST a batch; the parsed answer on 200 (its latency_us recorded), else None."""
        with self.client.post(DECIDE, data=body, headers=HEADERS, name=f"{DECIDE} [{label}]",
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {(resp.text or '')[:200]}")
                return None
            try:
                answer = json.loads(resp.content)
            except ValueError:
                resp.failure("answer is not JSON")
                return None
            samples.server_us.append(answer["latency_us"])
            if "component_us" in answer:  # an older edge does not tell
                samples.component_us.append(answer["component_us"])
            return answer  # type: ignore[no-any-return]


class VisitorUser(EdgeUser):
    """One visitor's whole journey per task, then a short pause before the next visitor."""

    weight = 9
    wait_time = between(0.5, 3.0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.report_outcomes = bool(getattr(self.environment.parsed_options,
                                            "report_outcomes", False))

    @task
    def visit(self) -> None:
        self.session_id = f"v-{uuid.uuid4().hex[:16]}"
        context = visitor_context(self.rng)
        self.next_check: float | None = None
        for page in journey(self.rng, context["device"]):
            self.view(page.url, page.stay_ms, page.events, context)

    def view(self, url: str, stay_ms: int, timeline: list[dict[str, Any]],
             context: dict[str, Any]) -> None:
        """Flush the page's events as they happen (every second, or at 20 events) and call
        back at next_check_ms; leave after `stay_ms`."""
        start = now_ms()
        pending = [{**ev, "ts_ms": int(start + ev["ts_ms"])} for ev in timeline]
        end = start + stay_ms
        sent = 0
        last_flush = start - FLUSH_MS  # the page view goes out at once
        while True:
            # the SDK wakes at its flush tick, when 20 events are waiting, or at next_check
            wake = min(last_flush + FLUSH_MS, end)
            if len(pending) - sent >= MAX_BATCH:
                wake = min(wake, pending[sent + MAX_BATCH - 1]["ts_ms"])
            callback = self.next_check is not None and self.next_check <= wake
            if callback:
                wake = self.next_check  # type: ignore[assignment]
            delay = (wake - now_ms()) / 1000
            if delay > 0:
                gevent.sleep(delay)
            t = now_ms()
            leaving = t >= end
            batch = []
            while sent < len(pending) and len(batch) < MAX_BATCH and (
                    leaving or pending[sent]["ts_ms"] <= t):
                event = pending[sent]
                event["ts_ms"] = min(event["ts_ms"], int(t))  # leaving: the rest goes now
                batch.append(event)
                sent += 1
            if batch or callback:
                self.flush(url, context, batch, callback)
            last_flush = t  # the SDK's flush timer restarts whether or not it sent
            if leaving and sent >= len(pending):
                return

    def flush(self, url: str, context: dict[str, Any], batch: list[dict[str, Any]],
              callback: bool) -> None:
        due = self.next_check
        body = json.dumps({"session_id": self.session_id, "context": {"url": url, **context},
                           "events": batch}, separators=(",", ":")).encode()
        answer = self.decide(body, "callback" if callback else "batch")
        arrived = now_ms()
        if answer is None:
            self.next_check = None
            return
        actions = answer["actions"]
        if callback and actions and due is not None:
            samples.timing_error_ms.append(arrived - due)
        samples.actions += len(actions)
        # after a call-back, the replay client's rule: one that delivered nothing and names
        # no later time is not repeated (it would loop)
        self.next_check = (next_call_back(answer, int(due)) if callback and due is not None
                           else answer["next_check_ms"])
        if self.report_outcomes:
            for action in actions:
                self.report_outcome(answer["decision_id"], action)

    def report_outcome(self, decision_id: str, action: dict[str, Any]) -> None:
        """What the visitor did with the content: shown, then maybe clicked (and bought)
        or dismissed."""
        kinds = ["impression"]
        then = self.rng.choices(("click", "dismiss", None), (0.15, 0.35, 0.5))[0]
        if then is not None:
            kinds.append(then)
        if then == "click" and self.rng.random() < 1 / 3:
            kinds.append("conversion")
        for kind in kinds:
            self.client.post(OUTCOME, name=OUTCOME, headers=HEADERS, data=json.dumps({
                "session_id": self.session_id, "decision_id": decision_id,
                "trigger": action["trigger"], "type": kind,
                "outcome_token": action.get("outcome_token"),
                "ts_ms": int(now_ms())}).encode())


class ThroughputUser(EdgeUser):
    """Realistic 20-event batches as fast as the edge answers (or, with --batch-rate, at a
    fixed pace: an open-loop offered load); a new visitor every 50 batches."""

    weight = 1

    def wait_time(self) -> float:
        if self.rate <= 0:
            return 0.0
        # pace by schedule, not by sleep after answer: a slow answer does not lower the load
        self.due = max(self.due + 1.0 / self.rate, time.monotonic())
        return max(0.0, self.due - time.monotonic())

    def on_start(self) -> None:
        self.rate = float(getattr(self.environment.parsed_options, "batch_rate", 0.0) or 0.0)
        self.due = time.monotonic() + random.random() / self.rate if self.rate > 0 else 0.0
        self.new_session()

    def new_session(self) -> None:
        self.session_id = f"t-{uuid.uuid4().hex[:16]}"
        self.seq = 0

    @task
    def batch(self) -> None:
        self.seq += 1
        answer = self.decide(throughput_body(self.session_id, self.seq), "throughput")
        if answer is not None:
            samples.actions += len(answer["actions"])
        if self.seq >= 50:
            self.new_session()
