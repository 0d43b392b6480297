"""URLs are read one way (`edge_module.core.urls`): the path the core matches pages on is
the path recalibration finds in the decision log, whatever form of URL the client sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.learning.data import load_sessions
from control_plane.rulepack import compile_snapshot, load_pack
from control_plane.telemetry.telemetry_store import TelemetryStore
from edge_module.core import decide, load_snapshot
from edge_module.core.urls import strip_url, url_path
from edge_module.telemetry.decision_log import decision_record
from tests.factories import T0, ev, request

FULL_URL = "https://user:secret@shop.example/pricing?utm_source=ad#plans"


@pytest.mark.parametrize("url, path", [
    ("/pricing", "/pricing"),
    ("/pricing?plan=pro#faq", "/pricing"),
    ("https://shop.example/pricing", "/pricing"),
    (FULL_URL, "/pricing"),
    ("https://shop.example", "/"),
    ("https://shop.example?q=1", "/"),
    ("", "/"),
    ("//shop.example/pricing", "/pricing"),
    # a URL inside the query or the path is not where the path starts
    ("/pricing?next=https://shop.example/cart", "/pricing"),
    ("/go/https://shop.example/cart", "/go/https://shop.example/cart"),
])
def test_the_path_of_a_url(url, path):
    assert url_path(url) == path


@pytest.mark.parametrize("url, kept", [
    (FULL_URL, "https://shop.example/pricing"),
    ("https://shop.example/a?email=a@b.c", "https://shop.example/a"),
    ("/pricing?email=a@b.c#x", "/pricing"),
    ("//user@cdn.example/x", "//cdn.example/x"),
    ("/a/b@c/d", "/a/b@c/d"),  # an @ in the path is no userinfo
])
def test_the_log_keeps_a_url_without_query_fragment_or_userinfo(url, kept):
    assert strip_url(url) == kept


_URL_CHARS = "ab/:?#@.-+1"


@given(st.text(alphabet=_URL_CHARS, max_size=24))
def test_the_logged_url_names_the_page_the_core_matched(url):
    assert url_path(strip_url(url)) == url_path(url)


@given(st.text(alphabet=_URL_CHARS, max_size=24))
def test_nothing_the_log_keeps_carries_a_query_or_fragment(url):
    kept = strip_url(url)
    assert "?" not in kept and "#" not in kept


PACK = """\
pack: urls
models:
  thresholds:
    "pricing-nudge#0": {"*": 60%}
triggers:
  - id: pricing-nudge
    page: /pricing
    when:
      - scroll_depth: {gte: 80%, mode: adaptive}
    action: {content: discount-nudge-10}
"""


def test_a_full_url_from_the_client_is_on_the_pricing_page_for_recalibration(tmp_path):
    raw = compile_snapshot([load_pack(PACK, "urls.yaml")], "1", 0)
    snap = load_snapshot(json.dumps(raw))
    req = request([ev("page_view", 0, url=FULL_URL), ev("scroll", 500, depth=0.9)], 600,
                  url=FULL_URL)
    response = decide(snap, req, None, report=True)
    assert response["actions"]  # the core matched /pricing
    rec = decision_record(req, {**response, "id": "d1", "decision_id": "d1"}, T0 + 600,
                          "salt", "edge-1")
    store = TelemetryStore(tmp_path / "t.sqlite3")
    store.ingest([rec])
    sessions = load_sessions(store, snap, "pricing-nudge", ("/pricing",), T0, T0 + 1000)
    assert rec["context"]["url"] == "https://shop.example/pricing"  # as logged
    assert len(sessions) == 1 and len(sessions[0].moments) == 1
