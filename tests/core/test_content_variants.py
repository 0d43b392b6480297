"""Content variants: the decision returns the variant of the action's content chosen for
the visitor's device, locale and experiment arm, natively and in the real component."""

from __future__ import annotations

import json

import pytest

from control_plane.rulepack import compile_snapshot, load_pack
from control_plane.rulepack.content_catalog import parse_catalog
from edge_module.core import decide, load_snapshot
from tests.factories import envelope, ev, request

CATALOG = """\
content:
  discount-nudge-10:
    description: 10 % discount offer shown as a slide-in
    fields: {title: 10 % off today, body: On every plan, cta_text: Get it,
             cta_url: /checkout, image_url: "https://cdn.example.com/ten.png", style: toast}
    variants:
      - name: mobile-de
        when: {device: mobile, locale: de}
        fields: {title: Heute 10 %, style: banner}
      - name: de
        when: {locale: de}
        fields: {title: Heute 10 % Rabatt, body: Auf jeden Tarif}
      - name: de-at
        when: {locale: de-AT}
        fields: {title: Heute 10 % Nachlass}
      - name: mobile
        when: {device: mobile}
        fields: {style: banner}
      - name: static-arm
        when: {arm: static}
        fields: {cta_text: Take it}
      - name: tablet-static
        when: {device: tablet, arm: static}
        fields: {body: "On every plan, on your tablet"}
"""

PACK = """\
pack: variants
settings:
  experiment: {salt: variants, adaptive: 50%, static: 50%}
triggers:
  - id: pricing-discount
    page: /pricing
    when:
      - dwell: ">= 1s"
    action: {content: discount-nudge-10}
"""

DEVICES = ("desktop", "mobile", "tablet", None)
LOCALES = (None, "de", "de-AT", "de-CH", "DE-at", "de_AT", "en", "en-US")
ARMS = ("adaptive", "static")

BASE = {"title": "10 % off today", "body": "On every plan", "cta_text": "Get it",
        "cta_url": "/checkout", "image_url": "https://cdn.example.com/ten.png", "style": "toast"}


def expected(device: str | None, locale: str | None, arm: str) -> tuple[str, dict[str, str]]:
    """The choice the catalog describes, spelt out case by case."""
    lang = locale.lower().replace("_", "-") if locale else ""
    german, austrian = lang.split("-")[0] == "de", lang == "de-at"
    if device == "mobile" and german:
        return "mobile-de", {**BASE, "title": "Heute 10 %", "style": "banner"}
    if device == "tablet" and arm == "static":
        return "tablet-static", {**BASE, "body": "On every plan, on your tablet"}
    if austrian:  # de-AT before de: the longer locale, whatever the order in the file
        return "de-at", {**BASE, "title": "Heute 10 % Nachlass"}
    if german:
        return "de", {**BASE, "title": "Heute 10 % Rabatt", "body": "Auf jeden Tarif"}
    if device == "mobile":
        return "mobile", {**BASE, "style": "banner"}
    if arm == "static":
        return "static-arm", {**BASE, "cta_text": "Take it"}
    return "default", BASE


def snapshot_text(pack: str = PACK, catalog: str = CATALOG) -> str:
    return json.dumps(compile_snapshot([load_pack(pack, "variants.yaml")], "1", 0,
                                       parse_catalog(catalog, "catalog.yaml")))


def session_in(arm: str) -> str:
    """A session id the experiment puts in `arm` (the arm is a hash of the id)."""
    snap = load_snapshot(snapshot_text())
    for i in range(100):
        sid = f"s-{i}"
        if decide(snap, request([], 0, sid, "/pricing"), None)["arm"] == arm:
            return sid
    raise AssertionError(f"no session in {arm}")


def nudge(decider, device: str | None, locale: str | None, session: str) -> dict:
    context = {"url": "/pricing", "device": device, "locale": locale}
    req = request([ev("page_view", 0, url="/pricing")], 1500, session, "/pricing",
                  context={k: v for k, v in context.items() if v is not None})
    out = decider.decide(envelope(req))
    assert out.ok, out.text
    [action] = out.response["actions"]
    return action


def test_every_device_locale_and_arm_gets_its_variant(decider):
    assert decider.load(snapshot_text()).ok
    sessions = {arm: session_in(arm) for arm in ARMS}
    wrong = []
    for device in DEVICES:
        for locale in LOCALES:
            for arm in ARMS:
                action = nudge(decider, device, locale, sessions[arm])
                name, fields = expected(device, locale, arm)
                if action["variant"] != {"name": name, "fields": fields}:
                    wrong.append((device, locale, arm, action["variant"]["name"], name))
    assert wrong == []


def test_the_action_keeps_its_content_id_beside_the_variant(decider):
    assert decider.load(snapshot_text()).ok
    action = nudge(decider, "mobile", "de-CH", session_in("adaptive"))
    assert action["content"] == "discount-nudge-10"
    assert action["variant"]["name"] == "mobile-de"


def test_without_an_experiment_arm_variants_never_match(decider):
    pack = PACK.replace("settings:\n  experiment: {salt: variants, adaptive: 50%, static: 50%}\n",
                        "")
    assert decider.load(snapshot_text(pack)).ok
    assert nudge(decider, "tablet", None, "s-1")["variant"]["name"] == "default"


def test_content_without_fields_has_no_variant(decider):
    catalog = "content:\n  discount-nudge-10: 10 % discount offer shown as a slide-in\n"
    assert "content" not in json.loads(snapshot_text(catalog=catalog))
    assert decider.load(snapshot_text(catalog=catalog)).ok
    assert "variant" not in nudge(decider, "mobile", "de", "s-1")


def test_a_queued_action_gets_the_variant_of_the_context_it_is_delivered_in(decider):
    pack = PACK.replace("action: {content: discount-nudge-10}",
                        "action: {content: discount-nudge-10, tier: queued, delay: 2s}")
    assert decider.load(snapshot_text(pack)).ok
    sid = session_in("adaptive")
    first = decider.decide(envelope(request([ev("page_view", 0, url="/pricing")], 1500, sid,
                                            "/pricing", context={"url": "/pricing"})))
    assert first.response["actions"] == []
    later = decider.decide(envelope(request([], 3500, sid, "/pricing",
                                            context={"url": "/pricing", "locale": "de-AT"}),
                                    first.state))
    assert later.response["actions"][0]["variant"]["name"] == "de-at"


@pytest.mark.parametrize("locale", ["d", "deutsch-österreich", "de--AT", "de-AT-" + "x" * 40,
                                    42, ["de"], "de AT"])
def test_a_locale_that_is_not_a_language_tag_is_refused(decider, locale):
    assert decider.load(snapshot_text()).ok
    req = request([], 1500, "s-1", "/pricing", context={"url": "/pricing", "locale": locale})
    out = decider.decide(envelope(req))
    assert not out.ok
    assert out.error["field"] == "context.locale"


def test_a_snapshot_with_malformed_content_is_refused(decider):
    doc = json.loads(snapshot_text())
    doc["content"]["discount-nudge-10"]["variants"][0]["when"] = {"weekday": "mon"}
    out = decider.load(json.dumps(doc))
    assert not out.ok
    assert "content.discount-nudge-10.variants[0].when" in out.text


def test_fields_are_a_copy_a_host_may_change(decider):
    assert decider.load(snapshot_text()).ok
    first = nudge(decider, None, None, "s-1")
    first["variant"]["fields"]["title"] = "changed"
    assert nudge(decider, None, None, "s-2")["variant"]["fields"]["title"] == "10 % off today"
