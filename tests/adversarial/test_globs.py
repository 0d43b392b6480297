"""Issue #11, item 8: page globs match in linear time, the same way everywhere.

A page glob used to compile to a regex (`^/.*/.*/.*/.*/.*/reviews\\Z`) that backtracks on a
URL of many slashes: each such decision ran into its deadline and the instance was
rebuilt, so a trickle of hostile URLs starved every legitimate visitor. The matcher is now
`edge_module.core.globs` (greedy, linear); recalibration uses it too instead of `fnmatch`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.rulepack.compiler import page_bucket
from edge_module.core import load_snapshot
from edge_module.core.globs import Glob, from_legacy_regex, glob_match, normalize
from edge_module.core.request_input import MAX_ATTRIBUTE_VALUE, MAX_CONTEXT_VALUE
from loadtest.stack import EdgeStack, edge_stack
from tests.factories import T0
from tests.servers import http, wait_for

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_GLOB = "/*/*/*/*/*/reviews"


def old_regex(glob: str, ignore_case: bool = False) -> re.Pattern[str]:
    """How page and context globs were matched before: the semantics to keep."""
    glob = re.sub(r"\*+", "*", glob)
    return re.compile("^" + ".*".join(re.escape(p) for p in glob.split("*")) + r"\Z",
                      re.IGNORECASE if ignore_case else 0)


# Ordinary inputs: paths over a small alphabet (so that matches happen), fnmatch's and
# regex's special characters included, no newline (a regex `.` stops at one, `*` does not).
_CHARS = "ab/.?[]-"
globs = st.text(alphabet=_CHARS + "*", max_size=12)
paths = st.text(alphabet=_CHARS, max_size=24)


@settings(max_examples=400, deadline=None)
@given(globs, paths)
def test_the_matcher_agrees_with_the_old_regex_on_ordinary_paths(glob, path):
    assert Glob(glob).match(path) is bool(old_regex(glob).match(path))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="aBc*.", max_size=8), st.text(alphabet="AbC.", max_size=16))
def test_context_globs_ignore_case_as_before(glob, text):
    assert Glob(glob, ignore_case=True).match(text) is bool(old_regex(glob, True).match(text))


@settings(max_examples=100, deadline=None)
@given(globs)
def test_snapshots_with_the_old_regex_index_load_as_the_same_globs(glob):
    glob = normalize(glob)
    legacy = "^" + ".*".join(re.escape(p) for p in glob.split("*")) + r"\Z"
    assert from_legacy_regex(legacy) == glob


@pytest.mark.parametrize("regex", [r"^/(a+)+$", r"^/a+\Z", r"^/\d.*\Z", r"^/(x|y).*\Z"])
def test_any_other_regex_in_a_snapshot_is_refused_not_run(regex):
    snap = {"format": "edge-triggers/1", "revision": "1",
            "triggers": [{"id": "t", "action": {"content": "c"}}],
            "index": {"pattern": [[regex, [0]]]}}
    with pytest.raises(Exception, match="not a page glob"):
        load_snapshot(json.dumps(snap))


@settings(max_examples=200, deadline=None)
@given(st.lists(globs, min_size=1, max_size=4), paths)
def test_the_page_index_selects_exactly_the_triggers_whose_glob_matches(page_globs, path):
    index: dict[str, Any] = {"exact": {}, "prefix": [], "glob": [], "any": []}
    for i, glob in enumerate(page_globs):
        kind, key = page_bucket(glob)
        if kind == "any":
            index["any"].append(i)
        elif kind == "exact":
            index["exact"].setdefault(key, []).append(i)
        else:
            index[kind].append([key, [i]])
    snap = load_snapshot(json.dumps({
        "format": "edge-triggers/1", "revision": "1", "index": index,
        "triggers": [{"id": f"t{i}", "action": {"content": "c"}} for i in range(len(page_globs))],
    }))
    expected = {i for i, glob in enumerate(page_globs) if glob_match(glob, path)}
    assert set(snap.scope(path).members) == expected


def test_fnmatch_specials_are_literal_for_recalibration_as_for_the_core():
    # fnmatch read `?` as any character and `[ab]` as a class; the core never did
    assert glob_match("/p?x", "/p?x") and not glob_match("/p?x", "/pax")
    assert glob_match("/[ab]/*", "/[ab]/z") and not glob_match("/[ab]/*", "/a/z")
    from control_plane.learning import proposal, recalibration
    assert "fnmatch" not in vars(recalibration) and "fnmatch" not in vars(proposal)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(500, 20_000), st.sampled_from(["/", "/a", "//x"]),
       st.sampled_from([HOSTILE_GLOB, "/*/*/*/*/*/*/*/*/z", "*a*a*a*a*a*a*b", "/**/**/r*"]))
def test_hostile_paths_cost_linear_time(n, unit, glob):
    # a generous bound (the old regex needed seconds for n = 2,000 against HOSTILE_GLOB)
    started = time.perf_counter()
    for _ in range(10):
        Glob(glob).match(unit * n)
        Glob(glob, ignore_case=True).match(unit * n)
    assert time.perf_counter() - started < 1.0


# -- against a real edge: granian + the real component -------------------------------------

REVIEWS_PACK = f"""\
pack: reviews
triggers:
  - id: deep-reviews
    page: "{HOSTILE_GLOB}"
    action: {{content: reviews-nudge}}
  - id: google-referred
    page: /landing
    when:
      - referrer: "*google.*"
      - attribute: {{name: plan, glob: "*pro*"}}
    action: {{content: pro-nudge}}
"""


def publish(stack: EdgeStack, folder: Path) -> None:
    """`trigger-engine publish` with the stack's own store, keys and registry."""
    env = {**os.environ, "CONTROL_DATA_DIR": str(stack.workdir / "control"),
           "TRIGGERS_STORE": str(stack.workdir / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(stack.workdir / "trusted")}
    done = subprocess.run([str(Path(sys.executable).parent / "trigger-engine"), "publish",
                           str(folder)], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    # A roomy deadline: a busy 2-core CI box must not turn a slow-ish decision into an
    # abort; a backtracking matcher still runs far past it on these URLs.
    with edge_stack("shipped", workdir=tmp_path_factory.mktemp("globs"),
                    env_overrides={"EDGE_DECIDE_DEADLINE_MS": "1000"}) as running:
        before = http("GET", running.url + "/healthz")[1]["revision"]
        folder = running.workdir / "packs-reviews"
        shutil.copytree(running.workdir / "packs", folder)
        (folder / "reviews.yaml").write_text(REVIEWS_PACK)
        publish(running, folder)
        wait_for(lambda: http("GET", running.url + "/healthz")[1]["revision"] != before,
                 what="the reviews pack to reach the edge")
        yield running


def decide(stack: EdgeStack, sid: str, url: str, **context: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = http("POST", stack.url + "/v1/decide", {
        "session_id": sid, "context": {"url": url, **context},
        "events": [{"type": "page_view", "ts_ms": T0, "url": url}]})
    return status, body


def test_the_glob_still_selects_its_pages_on_the_edge(stack):
    status, body = decide(stack, "ok-1", "/shop/a/b/c/d/reviews")
    assert status == 200 and [a["trigger"] for a in body["actions"]] == ["deep-reviews"]
    status, body = decide(stack, "ok-2", "/shop/a/b/reviews")
    assert status == 200 and body["actions"] == []


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(slashes=st.integers(1000, 2040), shape=st.sampled_from(["/", "/a", "/x/"]),
       burst=st.integers(20, 40))
def test_a_burst_of_hostile_urls_leaves_legitimate_decisions_answering(stack, slashes, shape,
                                                                       burst):
    hostile = (shape * slashes)[:2040] + "!"
    before = http("GET", stack.url + "/healthz")[1]

    def bad(i: int) -> int:
        return decide(stack, f"bad-{slashes}-{i}", hostile)[0]

    def good(i: int) -> int:
        status, body = decide(stack, f"good-{slashes}-{i}", "/pricing")
        return status

    with ThreadPoolExecutor(8) as pool:
        bad_runs = [pool.submit(bad, i) for i in range(burst)]
        good_runs = [pool.submit(good, i) for i in range(burst)]
        bad_statuses = [f.result() for f in bad_runs]
        good_statuses = [f.result() for f in good_runs]
    assert good_statuses == [200] * burst
    assert bad_statuses == [200] * burst  # decided (no nudge), not stopped at the deadline
    after = http("GET", stack.url + "/healthz")[1]
    assert after["status"] == "ok"
    assert after["traps"] == before["traps"] and after["aborted"] == before["aborted"]


def test_referrer_and_attribute_globs_work_within_their_bounds(stack):
    status, body = decide(stack, "ref-1", "/landing", referrer="https://www.GOOGLE.com/x",
                          attributes={"plan": "Pro-annual"})
    assert status == 200 and [a["trigger"] for a in body["actions"]] == ["google-referred"]


@pytest.mark.parametrize("context, field", [
    ({"referrer": "https://x/" + "*" * MAX_CONTEXT_VALUE}, "context.referrer"),
    ({"attributes": {"plan": "p" * (MAX_ATTRIBUTE_VALUE + 1)}}, "context.attributes.plan"),
    ({"attributes": {"plan": {"nested": 1}}}, "context.attributes.plan"),
    ({"attributes": {f"a{i}": i for i in range(65)}}, "context.attributes"),
])
def test_oversized_context_values_get_a_clear_400(stack, context, field):
    status, body = decide(stack, "big-1", "/landing", **context)
    assert status == 400 and body["error"]["code"] == "invalid_request"
    assert body["error"]["field"] == field
