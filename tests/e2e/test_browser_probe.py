"""What the browser checks read from the page's fetch probe (loadtest/browser_stack.py)."""

import json

from loadtest.browser_stack import decide_events

PV = {"type": "page_view", "ts_ms": 1000, "url": "/pricing"}
SCROLL = {"type": "scroll", "ts_ms": 1200, "depth": 0.5, "y": 400}
PV_AGAIN = {"type": "page_view", "ts_ms": 9000, "url": "/pricing"}


def sent(url: str, events: list[dict]) -> dict:
    return {"url": url, "body": json.dumps({"events": events}), "at": 0}


def test_a_resent_batch_counts_once_and_a_second_page_view_stays_a_second():
    probe = [sent("http://edge/v1/decide", [PV, SCROLL]),  # answered 429
             sent("http://edge/v1/outcomes", [{"type": "click", "ts_ms": 1}]),
             sent("http://edge/v1/decide", [PV, SCROLL, PV_AGAIN])]  # the retry, and more
    assert decide_events(probe) == [PV, SCROLL, PV_AGAIN]
