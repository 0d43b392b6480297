"""Bounds the core keeps on what it loads and answers: snapshots past the compiler's bounds
or malformed are refused (422), input the component could not carry is refused the same
way natively and in the component (never a trap), `now_ms: null` is an absent now_ms,
`next_check_ms` stays within 2^53 - 1, and a corrupt stored state reads as unreadable."""

from __future__ import annotations

import json
import marshal

import pytest

from edge_module.core import (
    decide_json,
    decide_packed,
    decide_parts,
    load_snapshot,
    pack,
    unpack,
)
from edge_module.core.errors import SnapshotError
from edge_module.core.request_input import MAX_TIME_MS
from edge_module.core.session import STATE_VERSION
from edge_module.core.snapshot_checks import MAX_DURATION_MS, MAX_JSON_DEPTH, too_deep
from edge_module.core.state_checks import readable_state
from tests.factories import T0, envelope, ev, loaded, request, snapshot_text

ANY_PAGE = "pack: p\ntriggers:\n  - id: t\n    action: {content: c}\n"
QUEUED = ("pack: p\ntriggers:\n  - id: t\n    action: {content: c, tier: queued, "
          "delay: 1h}\n")
REFERRER = ("pack: p\ntriggers:\n  - id: t\n    when:\n      - referrer: \"*google*\"\n"
            "    action: {content: c}\n")


def snapshot_doc(*packs: str) -> dict:
    return json.loads(snapshot_text(*packs))


def refusal(text: str) -> SnapshotError:
    with pytest.raises(SnapshotError) as caught:
        load_snapshot(text)
    assert caught.value.status == 422 and caught.value.code == "invalid_snapshot"
    return caught.value


# -- snapshots: bounds -----------------------------------------------------------------------

def test_a_snapshot_delay_past_ten_years_is_refused_naming_it():
    doc = snapshot_doc(QUEUED)
    doc["triggers"][0]["action"]["delay_ms"] = MAX_DURATION_MS + 1
    assert "triggers[0].action.delay_ms" in refusal(json.dumps(doc)).message


def test_a_snapshot_delay_of_ten_years_loads():
    doc = snapshot_doc(QUEUED)
    doc["triggers"][0]["action"]["delay_ms"] = MAX_DURATION_MS
    assert load_snapshot(json.dumps(doc)).revision == "1"


def test_a_snapshot_quiet_period_past_ten_years_is_refused():
    doc = snapshot_doc(ANY_PAGE)
    doc["fatigue"] = {"quiet_after_dismiss_ms": MAX_DURATION_MS + 1}
    assert "fatigue.quiet_after_dismiss_ms" in refusal(json.dumps(doc)).message


def test_a_snapshot_sequence_wait_past_ten_years_is_refused():
    doc = snapshot_doc("pack: p\nsequences:\n  - id: s\n    start: click\n    steps:\n"
                       "      - {id: a, after: 2s, action: {content: c}}\n")
    doc["sequences"][0]["steps"][0]["after_ms"] = 10**15
    assert "sequences[0].steps[0].after_ms" in refusal(json.dumps(doc)).message


@pytest.mark.parametrize("number", ["9" * 4298, "9007199254740992", "-9007199254740992",
                                    "1e300", "NaN", "Infinity"])
def test_a_snapshot_number_past_2_53_or_not_finite_is_refused(number):
    text = snapshot_text(ANY_PAGE).replace('"created_ms":0', f'"created_ms":{number}')
    assert number[:4] in text
    refusal(text)


def test_a_snapshot_nested_past_the_depth_limit_is_refused_before_it_is_parsed():
    deep = "[" * 50_000 + "]" * 50_000
    text = snapshot_text(ANY_PAGE).replace('"created_ms":0', f'"created_ms":0,"x":{deep}')
    assert "nest deeper" in refusal(text).message


def test_a_snapshot_string_with_a_lone_surrogate_is_refused_naming_it():
    text = snapshot_text(ANY_PAGE).replace('"revision":"1"', '"revision":"1\\ud800"')
    assert refusal(text).message.startswith("revision:")


def test_a_snapshot_with_an_escaped_surrogate_pair_loads():
    text = snapshot_text(ANY_PAGE).replace('"revision":"1"', '"revision":"1\\ud83d\\ude00"')
    assert load_snapshot(text).revision == "1\U0001F600"


# -- snapshots: malformed index and segments ------------------------------------------------

@pytest.mark.parametrize("key", ["glob", "prefix", "pattern"])
@pytest.mark.parametrize("value", [0.5, "x", {"a": 1}, [1.5], [["/a"]]])
def test_a_malformed_index_list_is_refused_not_a_500(key, value):
    doc = snapshot_doc(ANY_PAGE)
    doc["index"][key] = value
    assert refusal(json.dumps(doc)).message.startswith(f"index.{key}")


@pytest.mark.parametrize("preds", [[0.5], ["device"], 3, [None]])
def test_a_malformed_segment_is_refused_not_a_500(preds):
    doc = snapshot_doc(ANY_PAGE)
    doc["segments"] = {"mobile": preds}
    assert refusal(json.dumps(doc)).message.startswith("segments.mobile")


# -- the JSON export: never a trap, the same answer on every decider ------------------------

SURROGATES = {
    "context.url": '"context":{"url":"/\\ud800"}',
    "context.referrer": '"context":{"url":"/","referrer":"\\ud83d google"}',
    "context.attributes": '"context":{"url":"/","attributes":{"\\ud800":1}}',
    "events[0].target": '"events":[{"type":"click","ts_ms":%d,"target":"\\udfff"}]' % T0,
}


@pytest.fixture(params=["native", "component"])
def json_decider(request):
    """The deciders a JSON text reaches as it is (the packed path parses no JSON)."""
    from tests.factories import ComponentDecider, NativeDecider

    if request.param == "native":
        return NativeDecider()
    return ComponentDecider(request.getfixturevalue("new_instance")())


@pytest.mark.parametrize("field", SURROGATES)
def test_a_lone_surrogate_in_a_request_string_is_refused_naming_the_field(json_decider,
                                                                          field):
    """On the JSON export (the packed path's host refuses such JSON itself: orjson)."""
    decider = json_decider
    loaded(decider, REFERRER)
    text = ('{"now_ms":null,"state":null,"request":{"session_id":"s","now_ms":%d,%s}}'
            % (T0 + 5000, SURROGATES[field]))
    out = decider.decide(text)
    assert out.error["code"] == "invalid_request"
    assert out.error["field"] == field
    assert "lone UTF-16 surrogate" in out.error["message"]


def test_an_escaped_surrogate_pair_is_a_character_and_decides(decider):
    loaded(decider, REFERRER)
    text = ('{"now_ms":null,"state":null,"request":{"session_id":"s","now_ms":%d,'
            '"context":{"url":"/","referrer":"\\ud83d\\ude00 google"}}}' % (T0 + 5000))
    assert [a["trigger"] for a in decider.decide(text).response["actions"]] == ["t"]


def test_a_stored_state_with_a_lone_surrogate_starts_a_fresh_session():
    snap = load_snapshot(snapshot_text(ANY_PAGE))
    state = json.dumps({"v": 1, "t0": T0, "url": "/\ud800", "pv": T0, "d": 0.0, "sc": [],
                        "hv": {}, "f": {"t": [1, T0, 1, T0]}, "q": []})
    text = ('{"now_ms":null,"state":%s,"request":{"session_id":"s","now_ms":%d}}'
            % (state, T0 + 5000))
    response = json.loads(decide_json(snap, text).partition("\n")[0])
    assert [a["trigger"] for a in response["actions"]] == ["t"]  # no fire record: fresh


def test_the_packed_path_carries_a_lone_surrogate_without_a_check_on_the_hot_path():
    """Marshal carries a lone surrogate both ways (surrogatepass), so the packed answer is
    always one the boundary can carry; the host's JSON parser refuses such a request
    before it is packed, so the packed path spends nothing looking for one."""
    snap = load_snapshot(snapshot_text(REFERRER))
    req = {"session_id": "s", "now_ms": T0, "context": {"url": "/", "referrer": "\ud800 g"}}
    response, state = unpack(decide_packed(snap, pack((None, None, req))))
    assert response["revision"] and isinstance(state, bytes)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 50_000])
def test_json_nested_past_the_limit_is_invalid_json_on_every_host(json_decider, depth):
    loaded(json_decider, ANY_PAGE)
    text = ('{"now_ms":null,"state":null,"request":{"session_id":"s","now_ms":%d,'
            '"context":{"attributes":{"x":%s}}}}' % (T0, "[" * depth + "]" * depth))
    out = json_decider.decide(text)
    assert out.error["code"] == "invalid_json"
    assert f"deeper than {MAX_JSON_DEPTH}" in out.error["message"]


def test_json_nested_to_the_limit_is_parsed_on_every_host(json_decider):
    loaded(json_decider, ANY_PAGE)
    depth = MAX_JSON_DEPTH - 5  # the envelope's own levels
    text = ('{"now_ms":null,"state":null,"request":{"session_id":"s","now_ms":%d,'
            '"context":{"attributes":{"x":%s}}}}' % (T0, "[" * depth + "]" * depth))
    assert json_decider.decide(text).error["field"] == "context.attributes.x"


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert not too_deep(json.dumps({"a": "[" * 10_000, "b": "\\\"[" * 300}))
    assert too_deep("[" * (MAX_JSON_DEPTH + 1))


# -- now_ms and next_check_ms ----------------------------------------------------------------

def test_now_ms_null_is_an_absent_now_ms(decider):
    loaded(decider, ANY_PAGE)
    req = {"session_id": "s", "now_ms": None}
    out = decider.decide(envelope(req, host_now=T0))
    assert [a["trigger"] for a in out.response["actions"]] == ["t"]


def test_now_ms_null_without_the_hosts_clock_is_still_required(decider):
    loaded(decider, ANY_PAGE)
    out = decider.decide(envelope({"session_id": "s", "now_ms": None}))
    assert out.error["field"] == "now_ms"


def test_next_check_is_never_announced_past_2_53(decider):
    loaded(decider, QUEUED)
    now = MAX_TIME_MS - 1000  # the queued action falls due an hour later
    out = decider.decide(envelope({"session_id": "s", "now_ms": now,
                                   "context": {"url": "/"}}))
    assert out.response["next_check_ms"] == MAX_TIME_MS


# -- stored state: every inner value checked ------------------------------------------------

def fresh_state(**parts):
    return {"v": STATE_VERSION, "t0": T0, "url": "/", "pv": T0, "d": 0.0, "sc": [[T0, 0.0]], "hv": {},
            "f": {}, "q": [], **parts}


def test_states_the_core_writes_are_readable(decider):
    loaded(decider, """
        pack: p
        triggers:
          - id: t
            when:
              - count: {event: click, window: 2s, gte: 2}
              - avg: {field: scroll.y, window: 2s, gte: 0}
              - focus_to_input: "< 5s"
              - mouse_entropy: {gte: 0, window: 2s}
            cap: {per_session: 3}
            action: {content: c, tier: queued, delay: 1s}
        """)
    req = request([ev("page_view", 0, url="/"), ev("scroll", 10, y=300, depth=0.4),
                   ev("click", 20, target="#a"), ev("click", 30, target="#a"),
                   ev("focus", 40, target="#f"), ev("input", 50, target="#f"),
                   ev("mousemove", 60, x=1, y=2), ev("mousemove", 70, x=-5, y=9),
                   ev("hover", 80, target="#h", duration_ms=40), ev("dismiss", 90)],
                  now=100, context={"url": "/", "device": "mobile",
                                    "attributes": {"ltv": 5}})
    state = decider.decide(envelope(req)).state
    assert readable_state(state)
    second = decider.decide(envelope(request([], now=2000), state=state)).state
    assert readable_state(second)


CORRUPT = {
    "scroll sample": {"sc": [[1, "x"]]},
    "fire record too short": {"f": {"t": [1]}},
    "queue entry": {"q": [["x", "t"]]},
    "queue out of order": {"q": [[T0 + 2, "a"], [T0 + 1, "b"]]},
    "hover time": {"hv": {"a": "x"}},
    "tracked time": {"ev": {"click": ["x"]}},
    "t0 too large": {"t0": 10**400},
    "t0 a float": {"t0": 1.5},
    "page view a string": {"pv": "x"},
    "depth a list": {"d": [1]},
    "url a number": {"url": 7},
    "pages not strings": {"pg": [1]},
    "mouse sector": {"ms": [[T0, 9]]},
    "sequence step": {"sq": {"s": ["x", T0]}},
    "streak": {"cs": {"t": "x"}},
    "channel spent": {"fc": {"push": [1, ["x"]]}},
    "attributes": {"cx": {"attributes": [1]}},
    "field values": {"fv": {"scroll.y": [[T0]]}},
}


@pytest.mark.parametrize("case", CORRUPT)
def test_a_state_corrupt_inside_is_unreadable(case):
    assert not readable_state(fresh_state(**CORRUPT[case]))


def test_unknown_state_keys_are_ignored_and_a_missing_one_is_unreadable():
    assert readable_state(fresh_state(zz=[object()]))
    state = fresh_state()
    del state["q"]
    assert not readable_state(state)


def test_the_packed_path_reads_now_ms_null_as_absent():
    snap = load_snapshot(snapshot_text(ANY_PAGE))
    out = unpack(decide_packed(snap, pack((T0, None, {"session_id": "s", "now_ms": None}))))
    response, state = out  # type: ignore[misc]
    assert [a["trigger"] for a in response["actions"]] == ["t"]
    assert marshal.loads(state)["t0"] == T0


CORRUPT_PARTS = {
    "scroll sample": {"sc": [[1, "x"]]},
    "fire record": {"f": {"t": [1]}},
    "queue entry": {"q": [["x", "t"]]},
    "hover time": {"hv": {"#buy": "x"}},
}


@pytest.mark.parametrize("part", CORRUPT_PARTS)
def test_a_state_corrupted_inside_its_parts_starts_the_session_afresh(decider, part):
    """A review's stored states of the right top-level shape but wrong values inside
    answered 500 mid-decision, natively and in the component."""
    loaded(decider, ANY_PAGE)
    state = {"v": 1, "t0": T0, "url": "/", "pv": T0, "d": 0.0, "sc": [], "hv": {}, "f": {},
             "q": [], **CORRUPT_PARTS[part]}
    events = [{"type": "scroll", "ts_ms": T0 + 10, "depth": 0.5, "y": 5},
              {"type": "hover", "ts_ms": T0 + 20, "target": "#buy", "duration_ms": 5}]
    out = decider.decide(json.dumps({"now_ms": None, "state": state, "request": {
        "session_id": "s", "now_ms": T0 + 5000, "context": {"url": "/"}, "events": events}}))
    assert out.ok, out.text
    assert [a["trigger"] for a in out.response["actions"]] == ["t"]


def test_the_parts_decide_as_the_envelope_and_read_the_request_anew_only_for_a_bad_state():
    """The edge function hands the core its parts (no envelope to pack and unpack in the
    same guest): the same answer as `decide_packed`, and the request read again (`fresh`)
    only when a state corrupted inside makes the engine start the session over."""
    snap = load_snapshot(snapshot_text(ANY_PAGE))

    def req() -> dict:
        return {"session_id": "s", "now_ms": T0 + 5000, "context": {"url": "/"},
                "events": [{"type": "scroll", "ts_ms": T0 + 10, "depth": 0.5, "y": 5}]}

    calls = []

    def fresh() -> dict:
        calls.append(1)
        return req()

    good = marshal.dumps({"v": STATE_VERSION, "t0": T0, "url": "/", "pv": T0, "d": 0.0,
                          "sc": [], "hv": {}, "f": {}, "q": []})
    bad = marshal.dumps({"v": STATE_VERSION, "t0": T0, "url": "/", "pv": T0, "d": 0.0,
                         "sc": [[1, "x"]], "hv": {}, "f": {}, "q": []})
    for blob, reads in ((None, 0), (good, 0), (bad, 1)):
        calls.clear()
        response, state = decide_parts(snap, T0 + 6000, blob, req(), False, fresh)
        assert len(calls) == reads
        packed = unpack(decide_packed(snap, pack((T0 + 6000, blob, req()))))
        assert (response, marshal.loads(state)) == (packed[0], marshal.loads(packed[1]))
        assert [a["trigger"] for a in response["actions"]] == ["t"]


def test_a_state_is_the_same_bytes_in_every_process():
    """The keys an event matches came from a set: their order, and so the tracked keys'
    order in the state, followed the process's hash seed."""
    import subprocess
    import sys

    script = ("import json, marshal, sys; from edge_module.core import decide_packed, "
              "load_snapshot, pack, unpack; from tests.factories import T0, snapshot_text; "
              "snap = load_snapshot(snapshot_text(\"pack: p\\ntriggers:\\n  - id: t\\n"
              "    when: [{count: {event: {type: click, target: '#buy'}, window: 5s, gte: 9}}, "
              "{count: {event: click, window: 5s, gte: 9}}]"
              "\\n    action: {content: c}\\n\")); "
              "req = {'session_id': 's', 'now_ms': T0 + 100, 'context': {'url': '/'}, "
              "'events': [{'type': 'click', 'ts_ms': T0, 'target': '#buy'}]}; "
              "sys.stdout.write(unpack(decide_packed(snap, pack((None, None, req))))[1].hex())")
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)},
                              check=True).stdout for seed in (1, 2, 3, 4)}
    assert len(outputs) == 1
