"""The learner, the recall-target threshold choice and the guardrail, on synthetic sessions
whose truth we know (the loop end to end is in test_evaluate)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from control_plane.learning import choose as pick
from control_plane.learning import model as learner
from control_plane.learning.data import Moment, SessionRow
from control_plane.learning.proposal import (
    Adaptive,
    Settings,
    _guardrail,
    _published,
    _recall,
)
from edge_module.core.snapshot import Condition

TRUE_W = {"dwell_ms": 1.2, "depth": -0.8, "mouse_entropy": -1.5, "hovers": 0.6}


def _vector(rng: random.Random) -> dict[str, float]:
    return {"dwell_ms": math.expm1(rng.gauss(9.0, 1.0)), "depth": rng.random(),
            "mouse_entropy": rng.uniform(0, 3), "hovers": float(rng.randint(0, 6)),
            "pages": float(rng.randint(1, 5))}  # pages: no effect at all


def _logit(vec: dict[str, float]) -> float:
    x = {"dwell_ms": (math.log1p(vec["dwell_ms"]) - 9.0), "depth": (vec["depth"] - 0.5) * 3,
         "mouse_entropy": vec["mouse_entropy"] - 1.5, "hovers": math.log1p(vec["hovers"]) - 1}
    return -1.5 + sum(TRUE_W[k] * x[k] for k in TRUE_W)


def _rows(n: int, seed: int, p_fire: float | None = None) -> list[SessionRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        vec = _vector(rng)
        y = rng.random() < 1 / (1 + math.exp(-_logit(vec)))
        m = Moment(0, vec, {}, p_fire=p_fire)
        rows.append(SessionRow(f"s{seed}-{i}", "*", {}, [m], converted=y))
    return rows


def test_the_learner_recovers_known_weights() -> None:
    model = learner.fit(_rows(6000, 1), c=10.0)
    assert model is not None
    raw = learner.matrix([_vector(random.Random(9)) for _ in range(1)], tuple(model["features"]))
    assert raw.shape[1] == len(model["features"])
    # weights are per standardised feature: back to the generator's units
    x_scale = {"dwell_ms": 1.0, "depth": 1 / 3, "mouse_entropy": 1.0, "hovers": 1.0}
    for name, true in TRUE_W.items():
        per_unit = model["weights"][name] / model["scale"][name] * x_scale[name]
        assert per_unit == pytest.approx(true, rel=0.25), name
    assert abs(model["weights"]["pages"]) < 0.1  # a feature with no effect stays near 0
    # calibrated: mean predicted = observed rate, in deciles of the score
    rows = _rows(4000, 2)
    names = tuple(model["features"])
    p = learner.score(model, learner.matrix([r.moments[0].vector for r in rows], names), names)
    y = np.array([r.converted for r in rows])
    order = np.argsort(p)
    for part in np.array_split(order, 5):
        assert p[part].mean() == pytest.approx(y[part].mean(), abs=0.05)


def test_one_class_gives_no_model() -> None:
    rows = _rows(100, 3)
    for r in rows:
        r.converted = False
    assert learner.fit(rows) is None


def _intent_problem(n: int, seed: int) -> tuple[pick.Problem, np.ndarray, list[pick.Cond]]:
    """Sessions with a hidden intent; the score overlaps between intents; conversions are
    25 % for high intent and 3 % for low: converters are not all high-intent."""
    rng = np.random.default_rng(seed)
    high = rng.random(n) < 0.3
    s = np.clip(rng.normal(np.where(high, 0.65, 0.4), 0.15), 0, 1)
    y = (rng.random(n) < np.where(high, 0.25, 0.03)).astype(float)
    cond = pick.Cond("t#0", "t#0", "intent", ">=", 0.5, True)
    return (pick.Problem(s.reshape(-1, 1), np.ones(n, bool), np.arange(n), y, np.ones(n)),
            high, [cond])


def test_threshold_reaches_the_recall_target_on_fresh_sessions() -> None:
    problem, _, conds = _intent_problem(6000, 4)
    choice = pick.choose(problem, 0.95, 0.9, 0.0, pick.boot_weights(problem.n, 0), conds)
    assert choice.thresholds is not None
    fresh, high, _ = _intent_problem(20000, 5)
    fired = pick.fires(fresh, choice.thresholds, conds)
    recall = fired[high].mean()
    assert recall >= 0.93  # the target, within the noise of 6,000 training sessions
    # and it is not the cautious answer of counting every converter as a target (here a
    # third of them are low-intent visitors who convert anyway): that one fires for 80 %+
    # of the low-intent sessions
    assert fired[~high].mean() < 0.72
    # the background rate was found near the low-intent one, never above it by much
    assert 0.0 <= choice.background <= 0.05


def test_a_higher_target_fires_more() -> None:
    problem, _, conds = _intent_problem(4000, 6)
    boot = pick.boot_weights(problem.n, 0)
    shares = [pick.choose(problem, t, 0.9, 0.0, boot, conds).fire_share for t in (0.8, 0.9, 0.97)]
    assert shares[0] < shares[1] < shares[2]


def test_the_step_bound_holds_back_a_big_drop_in_firing() -> None:
    problem, _, conds = _intent_problem(4000, 7)
    boot = pick.boot_weights(problem.n, 0)
    free = pick.choose(problem, 0.9, 0.9, 0.0, boot, conds)
    held = pick.choose(problem, 0.9, 0.9, free.fire_share + 0.2, boot, conds)
    assert held.bounded and held.fire_share >= free.fire_share + 0.2 - 1e-9


def test_the_step_bound_holds_back_a_big_rise_in_firing_too() -> None:
    """Outcomes that call for a jump in firing may be forged with the edge token: a review
    sent a segment from 30 % to 81 % of sessions in one run. Within the step, the most
    firing it allows, said to be bounded and short of the target."""
    problem, _, conds = _intent_problem(4000, 7)
    boot = pick.boot_weights(problem.n, 0)
    free = pick.choose(problem, 0.9, 0.9, 0.0, boot, conds)
    cap = free.fire_share - 0.2
    held = pick.choose(problem, 0.9, 0.9, 0.0, boot, conds, max_share=cap)
    assert held.bounded and not held.reached
    assert cap - 0.01 <= held.fire_share <= cap
    assert held.recall < free.recall
    assert pick.fires(problem, held.thresholds, conds).mean() <= cap
    # nothing reaching the target (firing for all it can) is held within the step as well
    widest = pick.choose(problem, 1.5, 0.9, 0.0, boot, conds, max_share=0.5)
    assert widest.bounded and not widest.reached and widest.fire_share <= 0.5
    # a step that allows the free choice changes nothing
    assert pick.choose(problem, 0.9, 0.9, 0.0, boot, conds,
                       max_share=free.fire_share + 0.01) == free


def _two_signals(n: int, seed: int) -> tuple[pick.Problem, np.ndarray, list[pick.Cond]]:
    """Two conditions whose sum is what tells intent (30 % high), and who is high."""
    rng = np.random.default_rng(seed)
    high = rng.random(n) < 0.3
    a = rng.normal(np.where(high, 1.0, 0.0), 1.0)
    b = rng.normal(np.where(high, 1.0, 0.0), 1.0)
    y = (rng.random(n) < np.where(high, 0.3, 0.02)).astype(float)
    conds = [pick.Cond("t#0", "t#0", "dwell", ">=", 0, True),
             pick.Cond("t#1", "t#1", "scroll_depth", ">=", 0, True)]
    problem = pick.Problem(np.stack([a, b], axis=1), np.ones(n, bool), np.arange(n), y,
                           np.ones(n))
    return problem, high, conds


def test_two_conditions_are_held_within_the_step_jointly() -> None:
    n = 3000
    problem, _, conds = _two_signals(n, 9)
    held = pick.choose(problem, 0.95, 0.9, 0.0, pick.boot_weights(n, 0), conds, max_share=0.3)
    assert held.bounded and not held.reached and held.thresholds is not None
    assert pick.fires(problem, held.thresholds, conds).mean() <= 0.3


def test_joint_conditions_are_tuned_together() -> None:
    """Two conditions whose sum is what matters: tuning each alone at the target fires far
    more than the joint search."""
    n = 5000
    problem, high, conds = _two_signals(n, 8)
    y = problem.y
    choice = pick.choose(problem, 0.9, 0.9, 0.0, pick.boot_weights(n, 0), conds)
    assert choice.thresholds is not None
    fired = pick.fires(problem, choice.thresholds, conds)
    assert fired[high].mean() >= 0.88
    # tuning each condition alone for the target and keeping both: recall falls below it
    single = [pick.choose(pick.Problem(problem.values[:, [k]], problem.ok, problem.session, y,
                                       problem.w), 0.9, 0.9, 0.0, pick.boot_weights(n, 0),
                          [conds[k]]).thresholds[0] for k in (0, 1)]
    a, b = problem.values[:, 0], problem.values[:, 1]
    both = (a >= single[0]) & (b >= single[1])
    assert both[high].mean() < fired[high].mean()


def _adaptive() -> Adaptive:
    cond = Condition("t#0", 0, "intent", ">=", lambda v, t: v >= t, 0.5, mode="adaptive",
                     model_key="t#0", static=False)
    return Adaptive("t", ("*",), [cond], 0.95)


def _held(n: int, seed: int) -> list[SessionRow]:
    """Held-out sessions: the current rule (logged `holds`) fires for the converters and a
    third of the rest; each session has one moment with an intent score."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = rng.random() < 0.2
        score = rng.uniform(0.7, 1.0) if y else rng.uniform(0.0, 1.0)
        holds = y or rng.random() < 0.33
        m = Moment(0, {}, {}, intent=score, holds=holds, policy="learned", p_fire=1.0 if holds
                   else 0.0)
        rows.append(SessionRow(f"h{i}", "*", {}, [m], shown=holds, converted=y))
    return rows


def test_the_guardrail_refuses_a_model_that_misses_the_target() -> None:
    held = _held(400, 9)
    def model_for(seg):
        return {}  # scores are the logged ones

    bad = _guardrail(_adaptive(), held, {"*": (0.9,)}, model_for, {}, 0.0, Settings())
    assert bad["checked"] and "recall" in bad["refused"]
    good = _guardrail(_adaptive(), held, {"*": (0.7,)}, model_for, {}, 0.0, Settings())
    assert good["checked"] and "refused" not in good  # all converters, fewer of the rest


def test_the_guardrail_refuses_more_false_triggers_when_the_current_rule_is_good() -> None:
    held = _held(400, 10)
    worse = _guardrail(_adaptive(), held, {"*": (0.0,)}, lambda seg: {}, {}, 0.0, Settings())
    assert "false triggers" in worse["refused"]


def test_the_guardrail_lets_a_rule_replace_one_that_misses_the_target_on_few_conversions() -> None:
    """Few held-out conversions made a ratio's bootstrap error explode (recall +- 300 %),
    and that 'noise' let a rule catching a third of the intent count as reaching the target,
    so every better candidate was refused for firing more. The comparison is paired now."""
    rng = random.Random(11)
    held = []
    for i in range(400):
        y = rng.random() < 0.06
        score = rng.uniform(0.6, 1.0) if y else rng.uniform(0.0, 1.0)
        holds = score > 0.85  # the current rule: a few of the converters only
        m = Moment(0, {}, {}, intent=score, holds=holds, policy="learned",
                   p_fire=1.0 if holds else 0.0)
        held.append(SessionRow(f"f{i}", "*", {}, [m], shown=holds, converted=y))
    verdict = _guardrail(_adaptive(), held, {"*": (0.55,)}, lambda seg: {}, {}, 0.02, Settings())
    assert verdict["checked"] and "refused" not in verdict, verdict
    assert verdict["current"]["recall"] < 0.6 < verdict["candidate"]["recall"]
    assert verdict["more_intent"][1] > 0  # catches more, at the lower bound too
    assert verdict["candidate"]["false"] > verdict["current"]["false"]


def test_when_no_threshold_reaches_the_target_it_fires_for_all_it_can() -> None:
    """A new model published without a threshold for a segment left the pack's default
    on a new scale (0.5 of a conversion probability: nobody) and recall at 0 %."""
    problem, _, conds = _intent_problem(300, 12)
    choice = pick.choose(problem, 1.5, 0.9, 0.0, pick.boot_weights(problem.n, 0), conds)
    assert choice.thresholds is not None and not choice.reached
    assert pick.fires(problem, choice.thresholds, conds).all()
    assert choice.fire_share == pytest.approx(1.0)


def test_no_background_counts_every_converter() -> None:
    """background_share 0: recall is that of converters, which fires for more."""
    problem, _, conds = _intent_problem(4000, 13)
    boot = pick.boot_weights(problem.n, 0)
    anchored = pick.choose(problem, 0.95, 0.9, 0.0, boot, conds)
    none = pick.choose(problem, 0.95, 0.9, 0.0, boot, conds, background_share=0.0)
    assert none.background == 0.0 < anchored.background
    assert none.fire_share > anchored.fire_share


def test_thresholds_are_chosen_on_cross_fitted_scores() -> None:
    """Scored by a model that learned from their own outcomes, converters rank higher than
    they would on new traffic. With features that say nothing, the in-sample scores still
    'separate' converters; the cross-fitted ones do not."""
    from control_plane.learning.proposal import _cross_fitted
    rng = random.Random(14)
    rows = []
    for i in range(1500):
        vec = {"dwell_ms": rng.uniform(1000, 60000), "depth": rng.random(),
               "hovers": float(rng.randint(0, 6)), "pages": float(rng.randint(1, 5)),
               "mouse_entropy": rng.uniform(0, 3), "scroll_px": rng.uniform(0, 9000)}
        m = Moment(0, vec, {}, intent=0.5)
        rows.append(SessionRow(f"n{i}", "*", {}, [m], converted=rng.random() < 0.1))
    cond = pick.Cond("t#0", "t#0", "intent", ">=", 0.5, True)
    fitted = learner.fit(rows, c=100.0)

    def refit(excluded: set[str]) -> dict | None:
        return learner.fit([r for r in rows if r.session not in excluded], c=100.0)

    def auc(p: pick.Problem) -> float:
        s = pick.session_max(p, p.ok, 0)
        pos, neg = s[p.y == 1], s[p.y == 0]
        return float((pos[:, None] > neg[None, :]).mean())
    inside = pick.build(rows, [cond], {"t#0": fitted})
    crossed = _cross_fitted(rows, [cond], {"t#0": fitted}, refit)
    assert crossed.n == inside.n and sorted(crossed.y) == sorted(inside.y)
    # (out of fold, noise even leans the other way: a fold's converters are missing from
    # the data its model learned the base rate from)
    assert auc(crossed) < 0.52, auc(crossed)
    assert auc(inside) > 0.54, auc(inside)


def test_conversions_that_show_no_intent_choose_nothing_instead_of_firing_for_all() -> None:
    """An independent review's 3 %-intent population: in a segment whose least engaged
    sessions converted as often as the rest, every recall estimate was 0, no threshold
    "reached" the target, and the segment went to firing for 99.9 % of its sessions, and
    stayed there for 8 rounds."""
    rng = np.random.default_rng(7)
    n = 4000
    s = rng.random(n)
    y = (rng.random(n) < 0.05).astype(float)  # conversions unrelated to the score
    y[s < 0.1] = (rng.random(int((s < 0.1).sum())) < 0.2)  # the least engaged convert more
    cond = pick.Cond("t#0", "t#0", "intent", ">=", 0.5, True)
    problem = pick.Problem(s.reshape(-1, 1), np.ones(n, bool), np.arange(n), y, np.ones(n))
    choice = pick.choose(problem, 0.95, 0.9, 0.0, pick.boot_weights(n, 0), [cond])
    assert choice.no_signal and choice.thresholds is None
    assert choice.background > y.mean()
    # while a segment whose conversions do rank with the score still gets thresholds
    signal, _, conds = _intent_problem(4000, 8)
    assert not pick.choose(signal, 0.95, 0.9, 0.0, pick.boot_weights(4000, 0), conds).no_signal


def test_a_segment_left_as_is_keeps_its_model_and_threshold_when_others_move():
    """An independent re-measure: segments "left as is" (no intent signal) lost their
    thresholds whenever a new model was fitted, and fell to *'s new threshold and model,
    which on its population fired for nearly every session."""
    keys, segments = ["t#1"], ["mobile", "desktop", "tablet", "*"]
    old_star, old_desk = {"w": "old *"}, {"w": "old desktop"}
    learned = {"t#1": {"*": old_star, "desktop": old_desk}}
    thresholds = {"t#1": {"*": 0.4, "desktop": 0.6}}
    new_star, new_mobile = {"w": "new *"}, {"w": "new mobile"}
    new_learned = {"t#1": {"*": new_star, "mobile": new_mobile}}
    out = _published(keys, segments, thresholds, learned, {"t#1": {"*": 0.03, "mobile": 0.2}},
                     new_learned, {"*": {"t#1": new_star}, "mobile": {"t#1": new_mobile}},
                     kept=["desktop", "tablet"])
    # chosen segments publish what they were chosen with; kept ones what they had (tablet
    # had *'s old pair); nothing falls to the new * pair but what was chosen on it
    assert out == {"t#1": {"mobile": 0.2, "desktop": 0.6, "tablet": 0.4, "*": 0.03}}
    assert new_learned["t#1"] == {"*": new_star, "mobile": new_mobile, "desktop": old_desk,
                                  "tablet": old_star}


def test_a_segment_chosen_on_the_pooled_model_publishes_it_as_its_own():
    """When * is kept on its old model, a segment whose threshold was chosen on the new
    pooled model must still score with that model, not fall back to *'s old one."""
    new_star = {"w": "new *"}
    new_learned = {"t#1": {"*": new_star}}
    out = _published(["t#1"], ["mobile", "*"], {"t#1": {"*": 0.4}}, {"t#1": {"*": {"w": "old"}}},
                     {"t#1": {"mobile": 0.2}}, new_learned, {"mobile": {"t#1": new_star}},
                     kept=["*"])
    assert out == {"t#1": {"mobile": 0.2, "*": 0.4}}
    assert new_learned["t#1"] == {"*": {"w": "old"}, "mobile": new_star}


def test_thresholds_of_a_plain_signal_stay_put_for_a_kept_segment():
    out = _published(["t#0"], ["mobile", "desktop", "*"], {"t#0": {"*": 3000.0}}, {},
                     {"t#0": {"*": 5000.0}}, {}, {"*": {}}, kept=["desktop"])
    assert out == {"t#0": {"desktop": 3000.0, "*": 5000.0}}


@pytest.mark.parametrize("estimate, shown", [(-0.0, "0.0%"), (-0.2, "0.0%"), (0.5, "50.0%"),
                                             (1.0, "100.0%"), (1.0237, "100.0%+")])
def test_a_recall_estimate_is_shown_as_a_share(estimate, shown):
    """Estimated from conversions less a background rate, it can pass 100 % or fall below
    0 (a review saw "-0.0%")."""
    assert _recall(estimate) == shown
