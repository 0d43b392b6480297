"""`next_check_ms` is exact: nothing fires before it, something fires at it, and when it is
null nothing fires later (absent new events). Checked on generated sessions, natively
(the differential test shows the component decides the same)."""

from __future__ import annotations

import copy

from hypothesis import event, given, settings
from hypothesis import strategies as st

from edge_module.core import decide, load_snapshot
from tests.cases_decisions import CHECKOUT, COOLDOWN, HOVER, PAGES, PRICING, VELOCITY
from tests.event_strategies import URLS, valid_events
from tests.factories import T0, snapshot_text

SNAPSHOT = load_snapshot(snapshot_text(PRICING, CHECKOUT, VELOCITY, HOVER, PAGES, COOLDOWN))


def call(state, now: int, evs=(), url="/"):
    request = {"session_id": "n", "now_ms": now, "context": {"url": url}, "events": list(evs)}
    return decide(SNAPSHOT, request, copy.deepcopy(state))


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.tuples(st.lists(valid_events, max_size=15), st.integers(0, 20_000)),
                        min_size=1, max_size=4),
       url=st.sampled_from(URLS))
def test_next_check_is_the_first_moment_anything_fires(batches, url):
    state = None
    now = T0
    result = None
    for evs, at in batches:
        now = max(now, T0 + at)
        result = call(state, now, evs, url)
        now = max(now, max((e["ts_ms"] for e in evs), default=now))
        state = result["state"]
    assert result is not None
    due = result["next_check_ms"]
    event("next check announced" if due is not None else "no next check")
    if due is None:
        for later in (1, 10, 999, 1000, 3000, 10_000, 60_000):
            assert call(state, now + later)["actions"] == [], later
    else:
        assert due >= now  # == now: more actions were due than one decision may return
        if due - 1 > now:
            assert call(state, due - 1)["actions"] == []
        assert call(state, due)["actions"] != []
