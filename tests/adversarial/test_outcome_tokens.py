"""Outcomes are taken only for decisions the edge made (issue #11, item 10): a stranger
cannot post conversions for any session and trigger to steer reports, lifts and
recalibration."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_module.http.outcome_tokens import OutcomeTokens, TokenError
from loadtest.stack import EdgeStack, edge_stack
from tests.factories import T0
from tests.servers import wait_for

KEY = bytes(range(32))
T = T0


# The token itself


@settings(max_examples=50, deadline=None)
@given(session=st.text(min_size=1, max_size=40), decision=st.text(min_size=1, max_size=40),
       trigger=st.text(max_size=40), other=st.text(min_size=1, max_size=40))
def test_a_token_authorises_exactly_the_values_it_was_issued_for(session, decision, trigger,
                                                                   other):
    tokens = OutcomeTokens(KEY, window_ms=60_000)
    token = tokens.issue(session, decision, trigger, T)
    tokens.check(token, session, decision, trigger, T + 1000)  # accepted
    for values in ((other, decision, trigger), (session, other, trigger),
                   (session, decision, trigger + other)):
        if values != (session, decision, trigger):
            with pytest.raises(TokenError):
                tokens.check(token, *values, T + 1000)


@settings(max_examples=100, deadline=None)
@given(session=st.text(min_size=1, max_size=20), cut=st.text(max_size=20),
       decision=st.text(min_size=1, max_size=20), trigger=st.text(max_size=20))
def test_a_token_cannot_be_split_another_way_across_its_values(session, cut, decision,
                                                               trigger):
    """A review forged outcomes for session "victim" with the tokens of a decision for
    session "victim\\0<decision id>": the MAC joined the values with NUL."""
    tokens = OutcomeTokens(KEY, window_ms=60_000)
    token = tokens.issue(f"{session}\x00{cut}", decision, trigger, T)
    with pytest.raises(TokenError):
        tokens.check(token, session, cut, f"{decision}\x00{trigger}", T + 1000)


def test_tokens_of_the_old_version_still_pass_unless_a_value_holds_a_nul():
    """Tokens issued before an upgrade stay good for their window; v1's join is only
    ambiguous when a value holds the NUL that joins them."""
    tokens = OutcomeTokens(KEY, window_ms=60_000)

    def v1(session: str, decision: str, trigger: str) -> str:
        return f"v1.{T}.{tokens._mac(session, decision, trigger, T, 'v1')}"

    assert tokens.check(v1("s", "d", "t"), "s", "d", "t", T + 1000) == T
    forged = v1("victim\x00" + "f" * 32, "d", "t")
    with pytest.raises(TokenError):
        tokens.check(forged, "victim", "f" * 32, "d\x00t", T + 1000)
    assert tokens.issue("s", "d", "t", T).startswith("v2.")


def test_a_token_expires_after_its_window():
    tokens = OutcomeTokens(KEY, window_ms=60_000)
    token = tokens.issue("s", "d", "t", T)
    tokens.check(token, "s", "d", "t", T + 60_000)
    with pytest.raises(TokenError, match="expired"):
        tokens.check(token, "s", "d", "t", T + 60_001)


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=200), st.binary(max_size=50),
                 st.builds("v{}.{}.{}".format, st.sampled_from("12"), st.text(max_size=20),
                           st.text(max_size=30))))
@example("v1.\u00b2.abc")  # a digit to str.isdigit, not to int()
@example("v1." + "9" * 400 + ".abc")
@example("v1.1.\u00e9t\u00e9")  # a non-ASCII MAC: compare_digest refuses such str
def test_missing_malformed_and_forged_tokens_are_refused(token):
    with pytest.raises(TokenError):
        OutcomeTokens(KEY, window_ms=60_000).check(token, "s", "d", "t", T)


def test_a_token_minted_with_another_key_or_a_moved_time_is_refused():
    ours, theirs = OutcomeTokens(KEY, 60_000), OutcomeTokens(bytes(32), 60_000)
    with pytest.raises(TokenError, match="does not match"):
        ours.check(theirs.issue("s", "d", "t", T), "s", "d", "t", T)
    version, _, mac = ours.issue("s", "d", "t", T).split(".")
    with pytest.raises(TokenError, match="does not match"):  # "extend" it by a later time
        ours.check(f"{version}.{T + 50_000}.{mac}", "s", "d", "t", T + 100_000)


# Against a real stack: an edge with its control plane


@pytest.fixture(scope="module")
def stack() -> Iterator[EdgeStack]:
    with edge_stack("shipped", telemetry=True,
                    env_overrides={"EDGE_TELEMETRY_INTERVAL_S": "0.1"}) as running:
        yield running


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def stored_outcomes(stack: EdgeStack) -> int:
    req = urllib.request.Request(stack.control_url + "/v1/telemetry/counts",
                                 headers={"Authorization": f"Bearer {stack.publisher_token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.loads(resp.read())["outcomes"])


def nudged(stack: EdgeStack, session: str) -> dict[str, Any]:
    """A visitor who gets the pricing nudge: the decide answer, with its tokens."""
    status, answer = post(stack.url + "/v1/decide", {
        "session_id": session, "now_ms": T + 3200,
        "context": {"url": "/pricing", "device": "desktop"},
        "events": [{"type": "page_view", "ts_ms": T, "url": "/pricing"},
                   {"type": "scroll", "ts_ms": T + 1000, "depth": 0.8, "y": 1400}]})
    assert status == 200 and answer["actions"], answer
    return answer


def test_only_outcomes_bound_to_a_real_decision_are_stored(stack):
    answer = nudged(stack, "visitor-a")
    action = answer["actions"][0]
    good = {"session_id": "visitor-a", "decision_id": answer["decision_id"],
            "trigger": action["trigger"], "type": "click",
            "outcome_token": action["outcome_token"]}
    forged: list[dict[str, Any]] = [
        {**good, "outcome_token": None},  # none at all (what anyone could send before)
        {k: v for k, v in good.items() if k != "outcome_token"},
        {**good, "session_id": "someone-else"},  # another visitor's session
        {**good, "trigger": "checkout-reminder"},  # a trigger the decision did not fire
        {**good, "decision_id": "0" * 32},  # a decision that was never made
        {**good, "outcome_token": answer["outcome_token"]},  # the decision's, for a trigger
        {**good, "outcome_token": action["outcome_token"][:-2] + "AA"},
        {**good, "decision_id": None, "type": "conversion"},
    ]
    before = stored_outcomes(stack)
    for body in forged:
        status, error = post(stack.url + "/v1/outcome", body)
        assert status == 403, body
        assert error["error"]["field"] == "outcome_token"
    for _ in range(3):  # a visitor replaying its own genuine report: stored once
        assert post(stack.url + "/v1/outcome", good)[0] == 200
    # a conversion that names no trigger, with the decision's own token (holdout visitors)
    conversion = {"session_id": "visitor-a", "decision_id": answer["decision_id"],
                  "type": "conversion", "outcome_token": answer["outcome_token"]}
    assert post(stack.url + "/v1/outcome", conversion)[0] == 200
    wait_for(lambda: stored_outcomes(stack) >= before + 2, timeout_s=30,
             what="the two genuine outcomes to reach the control plane")
    wait_for(lambda: _shipped_all(stack), timeout_s=30, what="every record shipped")
    assert stored_outcomes(stack) == before + 2
    with urllib.request.urlopen(stack.url + "/healthz", timeout=5) as resp:
        assert json.loads(resp.read())["outcomes_refused"] == len(forged)


def _shipped_all(stack: EdgeStack) -> bool:
    with urllib.request.urlopen(stack.url + "/healthz", timeout=5) as resp:
        telemetry = json.loads(resp.read())["telemetry"]
    return telemetry["buffered"] == 0 and telemetry["spooled_files"] == 0


def test_a_malformed_outcome_is_still_a_400_not_a_403(stack):
    answer = nudged(stack, "visitor-b")
    status, error = post(stack.url + "/v1/outcome", {
        "session_id": "visitor-b", "decision_id": answer["decision_id"], "type": "purchase",
        "outcome_token": answer["outcome_token"]})
    assert status == 400 and error["error"]["field"] == "type"


def counts_since(stack: EdgeStack, since_ms: int) -> tuple[int, int]:
    req = urllib.request.Request(
        f"{stack.control_url}/v1/telemetry/counts?since_ms={since_ms}",
        headers={"Authorization": f"Bearer {stack.publisher_token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc = json.loads(resp.read())
    return int(doc["decisions"]), int(doc["outcomes"])


@pytest.mark.parametrize("skew_ms", [-(10**12), 23 * 3600_000])
def test_a_visitors_clock_does_not_place_its_records_in_another_period(stack, skew_ms):
    """A decide with now_ms decades back or a day ahead, and an outcome claiming ts_ms 5 or
    a day ahead, were stored at those times: a visitor could push records into past or
    future report windows. Decisions are stamped by the edge's clock, and an outcome's
    ts_ms is kept between its decision and its arrival."""
    import time

    wait_for(lambda: _shipped_all(stack), timeout_s=30, what="earlier records shipped")
    start = int(time.time() * 1000) - 1000
    before = counts_since(stack, start)
    session = f"clock-{skew_ms}"
    status, answer = post(stack.url + "/v1/decide", {
        "session_id": session, "now_ms": start + skew_ms if start + skew_ms > 0 else 1000,
        "context": {"url": "/pricing"}})
    assert status == 200, answer
    status, _ = post(stack.url + "/v1/outcome", {
        "session_id": session, "decision_id": answer["decision_id"], "type": "conversion",
        "outcome_token": answer["outcome_token"], "ts_ms": 5 if skew_ms < 0 else start + skew_ms})
    assert status == 200
    wait_for(lambda: counts_since(stack, start) == (before[0] + 1, before[1] + 1),
             timeout_s=30, what="both records counted from the moment they were made")
    assert counts_since(stack, int(time.time() * 1000) + 60_000) == (0, 0)
