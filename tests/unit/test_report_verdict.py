"""The verdict box: each of the seed's findings judged from hand-made section numbers.

Every rule is fed numbers crafted to hold, to fail and (where it can be) to be
undecidable, e.g. patching pairs whose clean and corrupt decisions differ by less than
the section's ``min_gap``; sections that were not run are left out; malformed numbers
give "cannot be judged", never an exception; the HTML box is escaped and links each
finding to its section.
"""

from __future__ import annotations

import copy

import pytest

from dtlens.report.verdict import (
    CANNOT_JUDGE,
    DOES_NOT_HOLD,
    HOLDS,
    Verdict,
    verdict_html,
    verdicts,
)


def _one(key: str, numbers: dict, index: int = 0) -> Verdict:
    found = [v for v in verdicts({key: numbers}) if v.key == key]
    return found[index]


def _cal(high: float, low: float) -> dict:
    return {
        "at_high_rtg": {"rtg": 0.9, "success_rate": high},
        "at_low_rtg": {"rtg": 0.0, "success_rate": low},
    }


@pytest.mark.parametrize(
    ("high", "low", "expected"),
    [(1.0, 0.0, HOLDS), (0.75, 0.25, HOLDS), (0.7, 0.0, DOES_NOT_HOLD), (1.0, 0.5, DOES_NOT_HOLD)],
)
def test_calibration(high, low, expected):
    v = _one("calibration", _cal(high, low))
    assert v.verdict == expected
    assert f"{high:.0%} at RTG 0.9" in v.because and f"{low:.0%} at RTG 0" in v.because


def _run(layout: str, rtg: float, success: bool, confidence: float, decision) -> dict:
    return {
        "layout": layout,
        "rtg": rtg,
        "success": success,
        "min_confidence": confidence,
        "decision": decision,
    }


LAYOUTS = ("key/top-key", "key/top-ball", "ball/top-key", "ball/top-ball")
TURNS = ("left", "right", "right", "left")
OTHER = {"left": "right", "right": "left"}


def _routine(high_conf=0.95, solved=4, low_turns=None) -> dict:
    high = [
        _run(name, 0.9, i < solved, high_conf, turn)
        for i, (name, turn) in enumerate(zip(LAYOUTS, TURNS, strict=True))
    ]
    low_turns = low_turns if low_turns is not None else [OTHER[t] for t in TURNS]
    low = [_run(name, 0.0, False, 0.3, turn) for name, turn in zip(LAYOUTS, low_turns, strict=True)]
    return {"runs": high + low}


def test_set_routine_and_the_other_way_at_rtg_0():
    routine, other = verdicts({"set_routine": _routine()})
    assert (routine.verdict, other.verdict) == (HOLDS, HOLDS)
    assert "4/4 layouts solved at RTG 0.9" in routine.because
    assert _one("set_routine", _routine(high_conf=0.85)).verdict == DOES_NOT_HOLD
    assert _one("set_routine", _routine(solved=3)).verdict == DOES_NOT_HOLD
    same = ["left", "left", "right", "right"]  # two layouts turn as they do at 0.9
    flipped = _one("set_routine", _routine(low_turns=same), 1)
    assert flipped.verdict == DOES_NOT_HOLD and "2/4 opposite" in flipped.because
    no_turn = _one("set_routine", _routine(low_turns=[None] * 4), 1)
    assert no_turn.verdict == DOES_NOT_HOLD and "no turn" in no_turn.because
    one_rtg = {"runs": _routine()["runs"][:4]}
    assert _one("set_routine", one_rtg, 1).verdict == CANNOT_JUDGE


def _look_back(look_back: bool, n_turns: int) -> dict:
    rows = [
        {"layout": name, "rtg": rtg, "look_back": False, "n_turns": 1}
        for rtg in (0.9, 0.0)
        for name in LAYOUTS
    ]
    rows[0].update(look_back=look_back, n_turns=n_turns)  # key/top-key at the high RTG
    return {"rows": rows, "look_back_cases": []}


def test_look_back():
    assert _one("look_back", _look_back(True, 3)).verdict == HOLDS
    assert _one("look_back", _look_back(False, 1)).verdict == DOES_NOT_HOLD
    wandering = _one("look_back", _look_back(False, 5))
    assert wandering.verdict == DOES_NOT_HOLD and "never reaching a target" in wandering.because


def test_rtg_entropy_needs_higher_entropy_at_rtg_0_on_and_off_the_routine():
    n = {
        "mean_entropy": {
            "on routine": {"RTG 0.9": 0.05, "RTG 0.0": 1.0},
            "off routine": {"RTG 0.9": 0.3, "RTG 0.0": 1.6},
        }
    }
    assert _one("rtg_entropy", n).verdict == HOLDS
    n["mean_entropy"]["off routine"]["RTG 0.0"] = 0.2
    v = _one("rtg_entropy", n)
    assert v.verdict == DOES_NOT_HOLD and "off routine: 0.20 nats at RTG 0.0 vs 0.30" in v.because


def test_attention_and_congruence():
    mass = {"S->S": 0.4, "S->R": 0.1}
    attention = {"heads": {"L0H0": {"mass_high_rtg": mass}}}
    assert _one("attention", attention).verdict == HOLDS
    mass.update({"S->R": 0.5})
    assert _one("attention", attention).verdict == DOES_NOT_HOLD
    grows = {"grows_every_layer": {"left": True, "right": True, "forward": True}}
    assert _one("congruence", grows).verdict == HOLDS
    grows["grows_every_layer"]["forward"] = False
    assert _one("congruence", grows).verdict == DOES_NOT_HOLD


def _summary(handoff=1, peaks=("S5", "S9", "S9"), between=0.05) -> dict:
    return {"handoff_layer": handoff, "peak_by_layer": list(peaks), "most_between": between}


def _patching(gap_high=10.0, gap_low=8.0, high=None, low=None, rtg_gap=6.0, best=0.1, final=0.9):
    return {
        "min_gap": 0.5,
        "final_token": "S9",
        "instruction_swap_gap": {"RTG 0.9": gap_high, "RTG 0": gap_low},
        "instruction_swap_mean": {"RTG 0.9": high or _summary(), "RTG 0": low or _summary()},
        "rtg_change_gap": rtg_gap,
        "rtg_change_mean": {
            "layer0_rtg_tokens": {"R5": best, "R6": -0.05},
            "at_final_by_layer": [0.0, 0.4, final],
        },
    }


def test_patching_instruction_moves_straight_to_s9():
    instruction = lambda n: verdicts({"patching": n})[0]  # noqa: E731
    assert instruction(_patching()).verdict == HOLDS
    assert instruction(_patching(low=_summary(handoff=2))).verdict == DOES_NOT_HOLD
    assert instruction(_patching(high=_summary(between=0.3))).verdict == DOES_NOT_HOLD
    assert instruction(_patching(high=_summary(peaks=("S5", "R6", "S9")))).verdict == DOES_NOT_HOLD
    # a weak RTG is not judged: the other one decides
    weak_low = instruction(_patching(gap_low=0.01, low=_summary(handoff=None)))
    assert weak_low.verdict == HOLDS and "RTG 0: gap 0.010 < 0.5 logits, not judged" in (
        weak_low.because
    )
    blind = instruction(_patching(gap_high=0.2, gap_low=0.001))
    assert blind.verdict == CANNOT_JUDGE
    strict = _patching(gap_high=0.7, gap_low=0.7)
    strict["min_gap"] = 1.0  # the section's own threshold is the one used
    assert instruction(strict).verdict == CANNOT_JUDGE


def test_patching_rtg_is_collected():
    collected = lambda n: verdicts({"patching": n})[1]  # noqa: E731
    assert collected(_patching()).verdict == HOLDS
    assert collected(_patching(best=0.5)).verdict == DOES_NOT_HOLD  # one token carries it
    assert collected(_patching(final=0.3)).verdict == DOES_NOT_HOLD  # S9 does not hold it
    weak = collected(_patching(rtg_gap=0.1))
    assert weak.verdict == CANNOT_JUDGE and "0.100 < 0.5" in weak.because


def _path(gap=10.0, layouts=("key/top-key",), ratio=0.1, holds=True) -> dict:
    return {
        "layouts": list(layouts),
        "instruction_gap": gap,
        "min_gap": 0.5,
        "intermediate_over_one_hop": ratio,
        "claim_holds": holds,
    }


def test_path_patching():
    assert _one("path_patching", _path()).verdict == HOLDS
    assert _one("path_patching", _path(ratio=6.0, holds=False)).verdict == DOES_NOT_HOLD
    assert _one("path_patching", _path(ratio=None, holds=False)).verdict == CANNOT_JUDGE
    # a claim that "holds" on noise is not believed
    assert _one("path_patching", _path(gap=0.04)).verdict == CANNOT_JUDGE
    nothing = _one("path_patching", _path(gap=0.0, layouts=()))
    assert nothing.verdict == CANNOT_JUDGE and "nothing to patch" in nothing.because


def _circuit(gap=10.0, n_edges=5, total=191, faith=0.97) -> dict:
    return {
        "layouts": ["key/top-key"],
        "instruction_gap": gap,
        "min_gap": 0.5,
        "n_edges": n_edges,
        "n_edges_total": total,
        "faithfulness": faith,
        "target": 0.9,
    }


def test_circuit():
    assert _one("circuit", _circuit()).verdict == HOLDS
    assert _one("circuit", _circuit(n_edges=19)).verdict == HOLDS  # 19 <= 10% of 191
    assert _one("circuit", _circuit(n_edges=20)).verdict == DOES_NOT_HOLD
    none = _one("circuit", _circuit(n_edges=None, faith=None))
    assert none.verdict == DOES_NOT_HOLD and "keeps 90%" in none.because
    assert _one("circuit", _circuit(gap=0.1)).verdict == CANNOT_JUDGE


def _scrub(main=0.92, err=0.01, control=0.0, clean=4.93, resampled=0.0) -> dict:
    recovered = {
        "identity": 1.0,
        "empty": 0.0,
        "instruction_via_circuit_heads": main,
        "instruction_and_top_via_circuit_heads": 0.96,
        "circuit_edges_only": 0.0,
    }
    stderr = {k: 0.0 for k in recovered} | {"instruction_via_circuit_heads": err}
    if control is not None:
        recovered["control"], stderr["control"] = control, 0.09
    return {
        "circuit": {"layer0_heads": ["L0H1"], "control_head": "L0H0", "source": "circuit"},
        "clean": clean,
        "resampled": resampled,
        "recovered": recovered,
        "stderr": stderr,
    }


def test_scrubbing():
    holds = _one("scrubbing", _scrub())
    assert holds.verdict == HOLDS and "L0H1 recovers 0.92 ± 0.01" in holds.because
    assert "control via L0H0 0.00 ± 0.09" in holds.because
    assert _one("scrubbing", _scrub(control=None)).verdict == HOLDS  # one head: no control
    shipped = _one("scrubbing", _scrub(main=0.03, err=0.12, control=-0.05))
    assert shipped.verdict == DOES_NOT_HOLD
    straddles = _one("scrubbing", _scrub(main=0.75, err=0.05))  # 0.65 .. 0.85
    assert straddles.verdict == CANNOT_JUDGE and "straddles" in straddles.because
    both = _one("scrubbing", _scrub(control=0.9))
    assert both.verdict == CANNOT_JUDGE and "control recovers as well" in both.because
    flat = _one("scrubbing", _scrub(clean=0.2, resampled=0.0))
    assert flat.verdict == CANNOT_JUDGE and "0.200 < 0.5 logits" in flat.because
    loose = _scrub(clean=0.2, resampled=0.0) | {"min_gap": 0.1}  # the section's --min-gap
    assert _one("scrubbing", loose).verdict == HOLDS
    strict = _scrub() | {"min_gap": 5.0}  # clean 4.93 - resampled 0 < 5
    assert "4.930 < 5 logits" in _one("scrubbing", strict).because
    error = {"recovered": {}, "error": "nothing to recover"}
    assert _one("scrubbing", error).verdict == CANNOT_JUDGE
    no_circuit = _scrub()
    no_circuit["recovered"] = {"identity": 1.0, "empty": 0.0}
    assert _one("scrubbing", no_circuit).verdict == CANNOT_JUDGE


HOOKS = ("blocks.0.hook_resid_pre", "blocks.1.hook_resid_mid")


def _probe(acc=1.0, ci=(0.969, 1.0), rand=0.93, rand_ci=(0.874, 0.966)) -> dict:
    def per_hook(at_pre, at_mid):
        return dict(zip(HOOKS, (at_pre, at_mid), strict=True))

    return {
        "n_test": 120,
        "chance": 0.5,
        "accuracy_by_layer": per_hook(0.53, acc),
        "ci_by_layer": per_hook([0.44, 0.61], list(ci)),
        "random_model_accuracy_by_layer": per_hook(0.53, rand),
        "random_model_ci_by_layer": per_hook([0.44, 0.61], list(rand_ci)),
        "shuffled_accuracy_by_layer": per_hook(0.5, 0.51),
        "shuffled_ci_by_layer": per_hook([0.41, 0.59], [0.42, 0.6]),
    }


def test_probes():
    holds = _one("probes", _probe())
    assert holds.verdict == HOLDS and "random model 0.93 [0.87, 0.97]" in holds.because
    assert "at blocks.1.hook_resid_mid: trained 1.00 [0.97, 1.00]" in holds.because
    unreadable = _one("probes", _probe(acc=0.8, ci=(0.72, 0.87)))
    assert (
        unreadable.verdict == DOES_NOT_HOLD and "best held-out accuracy 0.80" in unreadable.because
    )
    free = _one("probes", _probe(rand=0.97, rand_ci=(0.92, 0.99)))  # a random model reads it too
    assert free.verdict == DOES_NOT_HOLD and "a baseline reads it" in free.because
    wide = _one("probes", _probe(acc=0.92, ci=(0.75, 0.98), rand=0.8, rand_ci=(0.7, 0.88)))
    assert wide.verdict == CANNOT_JUDGE and "overlap" in wide.because
    shuffled = _probe()
    shuffled["shuffled_ci_by_layer"][HOOKS[1]] = [0.9, 0.99]  # both baselines count
    assert _one("probes", shuffled).verdict != HOLDS
    no_ci = _probe()
    del no_ci["random_model_ci_by_layer"]
    assert _one("probes", no_ci).verdict == CANNOT_JUDGE


def _steer(
    instruction=0.0, side=1.0, unsteered=1.0, steered=1.0, by="target_side", controls=True
) -> dict:
    """Steering numbers as the section writes them: the direction it steered by and its
    own answer are given (the verdict reads them, it does not judge the rates again)."""

    def best(rate):
        return {"hook": "blocks.1.hook_resid_mid", "coef": 1.0, "retarget_rate": rate}

    rates = {"instruction": instruction, "target_side": side}
    return {
        "rtgs": [0.9, 0.0],
        "n_episodes": 4,
        "best": {fact: best(rate) for fact, rate in rates.items()},
        "steered_by": {"direction": by, "hook": "blocks.1.hook_resid_mid", "coef": 1.0},
        "new_target_at_rtg": {"0.9": 1.0, "0": 1.0 - steered},
        "rtg_control": {"unsteered": unsteered, "steered": steered},
        "answer": {"retargeted": rates[by] >= 0.75, "rtg_still_controls": controls},
    }


def test_steering_retargets_and_the_rtg_still_controls():
    retargeted, controls = verdicts({"steering": _steer()})
    assert (retargeted.verdict, controls.verdict) == (HOLDS, HOLDS)
    assert "along the target_side direction at blocks.1.hook_resid_mid" in retargeted.because
    assert "100% of 4 episodes" in retargeted.because and "instruction at most 0%" in (
        retargeted.because
    )
    assert "RTG control 1.00 against 1.00 unsteered" in controls.because
    by_instruction = _one("steering", _steer(instruction=0.75, side=0.5, by="instruction"))
    assert by_instruction.verdict == HOLDS and "the instruction direction" in by_instruction.because
    nothing = verdicts({"steering": _steer(side=0.5)})
    assert [v.verdict for v in nothing] == [DOES_NOT_HOLD, CANNOT_JUDGE]
    assert "no new target" in nothing[1].because
    lost = _one("steering", _steer(steered=0.5, controls=False), 1)
    assert lost.verdict == DOES_NOT_HOLD and "RTG control 0.50 against 1.00" in lost.because
    blind = _one("steering", _steer(unsteered=0.0, steered=0.0, controls=False), 1)
    assert blind.verdict == CANNOT_JUDGE and "even unsteered" in blind.because


def test_steering_follows_the_direction_the_section_chose():
    """Equal rounded rates: the verdict names the section's direction (``steered_by``,
    chosen on the unrounded rates), not the first one with the largest rounded rate."""
    tie = _one("steering", _steer(instruction=1.0, side=1.0, by="target_side"))
    assert "along the target_side direction" in tie.because
    assert "instruction at most 100%" in tie.because


def _maps(forward=(0.2, 1.0, 1.0, 0.9), high_mass=0.0, low_mass=0.59, rtgs=(0.9, 0.0)) -> dict:
    rows = [
        {"layout": name, "rtg": rtg, "turned_wrong_forward": f, "non_movement": mass}
        for rtg, mass in zip(rtgs, (high_mass, low_mass), strict=True)
        for name, f in zip(LAYOUTS, forward, strict=True)
    ]
    return {"placement": {"poses_per_layout": 40}, "summary": rows}


def test_maps_cached_decision_and_dummy_actions():
    cached, dummy = verdicts({"maps": _maps()})
    assert (cached.verdict, dummy.verdict) == (HOLDS, HOLDS)
    assert "key/top-key 0.20 (the look-back layout, not judged)" in cached.because
    assert "0.59 at RTG 0 vs 0.00 at RTG 0.9" in dummy.because
    assert _one("maps", _maps(forward=(1.0, 1.0, 0.5, 1.0))).verdict == DOES_NOT_HOLD
    assert _one("maps", _maps(high_mass=0.1, low_mass=0.15), 1).verdict == DOES_NOT_HOLD
    assert _one("maps", _maps(high_mass=0.1, low_mass=0.2), 1).verdict == HOLDS
    one_rtg = _maps(rtgs=(0.9, 0.9))
    assert _one("maps", one_rtg, 1).verdict == CANNOT_JUDGE
    only_look_back = {"summary": [r for r in _maps()["summary"] if r["layout"] == "key/top-key"]}
    assert _one("maps", only_look_back).verdict == CANNOT_JUDGE


def _agents(routine=1.0, hot_low=0.06, hot_high=5.3, cool_low=0.84, lstm=True) -> dict:
    agents = ["planner T=1", "planner T=5"] + (["PPO LSTM"] if lstm else [])
    rtgs = ["RTG 0.9", "RTG 0", "RTG = return"]

    def table(fill):
        return {a: {r: fill(a, r) for r in rtgs} for a in agents}

    def kinds(value):
        return {"routine": value, "decision": 0.4, "off-routine": 0.5, "all": value}

    kl_at = {("planner T=5", "RTG 0"): hot_low, ("planner T=5", "RTG 0.9"): hot_high,
             ("planner T=1", "RTG 0"): cool_low}  # fmt: skip

    def kl(a, r):
        return kinds(kl_at.get((a, r), 1.5))

    def kl_ci(a, r):
        value = kl_at.get((a, r), 1.5)
        return {
            k: [value - 0.01, value + 0.01] for k in ("routine", "decision", "off-routine", "all")
        }

    return {
        "agents": agents,
        "rtgs": rtgs,
        "kl": table(kl),
        "kl_ci": table(kl_ci),
        "agreement": table(lambda a, r: kinds(routine)),
        "n_steps": {"routine": 96, "decision": 50, "off-routine": 200, "all": 346},
        "decision_in_context": {"agreement": table(lambda a, r: 0.76)},
    }


def test_agent_comparison():
    simulates, hot = verdicts({"agent_comparison": _agents()})
    assert (simulates.verdict, hot.verdict) == (HOLDS, HOLDS)
    assert "planner T=1's most likely action on 100% of 96 routine steps" in simulates.because
    assert "at the decision square 40% (76% while" in simulates.because
    assert "the PPO LSTM: 100% routine" in simulates.because
    assert "KL(planner T=5 || DT) is 0.06 nats at RTG 0" in hot.because
    absent = _one("agent_comparison", _agents(routine=0.8, lstm=False))
    assert absent.verdict == DOES_NOT_HOLD and "checkpoint was not found" in absent.because
    assert _one("agent_comparison", _agents(routine=None)).verdict == CANNOT_JUDGE
    cool = _one("agent_comparison", _agents(cool_low=0.05), 1)  # closer to T=1 at RTG 0
    assert cool.verdict == DOES_NOT_HOLD
    assert _one("agent_comparison", _agents(hot_high=0.05), 1).verdict == DOES_NOT_HOLD
    close = _one("agent_comparison", _agents(hot_low=0.06, hot_high=0.075), 1)
    assert close.verdict == CANNOT_JUDGE and "overlap" in close.because
    one_agent = _agents()
    one_agent["agents"] = ["planner T=1"]
    assert _one("agent_comparison", one_agent, 1).verdict == CANNOT_JUDGE


def _model(success=(1.0, 1.0, 1.0, 1.0), diff=5.24, rtg=None) -> dict:
    return {
        "rtg": rtg,
        "success_by_layout": dict(zip(LAYOUTS, success, strict=True)),
        "decision_logit_diff": diff,
    }


def test_clone():
    both = {"available": True, "decision_transformer": _model(diff=6.13, rtg=0.9),
            "clone": _model()}  # fmt: skip
    holds = _one("clone", both)
    assert holds.verdict == HOLDS and "solves 4/4 layouts" in holds.because
    assert "the DT at RTG 0.9: 4/4, +6.13" in holds.because
    both["clone"] = _model(success=(1.0, 0.0, 1.0, 1.0))
    assert _one("clone", both).verdict == DOES_NOT_HOLD
    missing = {"available": False, "reason": "no shipped 'memorydt-clone' model",
               "decision_transformer": _model(rtg=0.9)}  # fmt: skip
    v = _one("clone", missing)
    assert v.verdict == CANNOT_JUDGE and "memorydt-clone" in v.because
    alone = {"available": False, "reason": "no DT", "clone": _model()}  # a clone report
    v = _one("clone", alone)
    assert v.verdict == HOLDS and "no decision transformer" in v.because


@pytest.mark.usefixtures("one_thread")
def test_the_rules_read_the_real_sections_numbers():
    """Each new section run on a tiny random model: its numbers are judged by their real
    key names (a rule that misses a key says "lack" in its because)."""
    from dtlens.report.config import ReportConfig
    from dtlens.report.sections import SECTION_MODULES
    from dtlens.report.sections import clone as clone_section
    from tests.conftest import build_model

    model, config = build_model(n_ctx=26), ReportConfig(max_steps=12, seed=3)
    numbers = {
        key: SECTION_MODULES[key].run(model, config).to_json()["numbers"]
        for key in ("scrubbing", "probes", "steering", "maps", "agent_comparison")
    }
    partner = build_model(model_type="clone", n_ctx=17)
    numbers["clone"] = clone_section.run(model, config, clone=partner).to_json()["numbers"]
    found = verdicts(numbers)
    assert [v.key for v in found] == ["scrubbing", "probes"] + ["steering"] * 2 + ["maps"] * 2 + [
        "agent_comparison"
    ] * 2 + ["clone"]
    for v in found:
        assert v.verdict in (HOLDS, DOES_NOT_HOLD, CANNOT_JUDGE) and v.because
        assert "lack" not in v.because, v


def test_only_sections_that_ran_and_malformed_numbers_cannot_be_judged():
    assert verdicts({}) == []
    assert verdicts({"dynamics": {"recorded": False}}) == []
    assert [v.verdict for v in verdicts({"maps": {}})] == [CANNOT_JUDGE] * 2
    keys = [v.key for v in verdicts({"congruence": {"grows_every_layer": {}}, "circuit": {}})]
    assert keys == ["congruence", "circuit"]  # report order
    [broken] = verdicts({"calibration": {"at_high_rtg": {}}})
    assert broken.verdict == CANNOT_JUDGE and "lack" in broken.because
    assert _one("congruence", {"grows_every_layer": {}}).verdict == DOES_NOT_HOLD


def test_numbers_are_not_modified():
    n = _patching()
    before = copy.deepcopy(n)
    verdicts({"patching": n})
    assert n == before


def test_the_box_lists_each_verdict_escaped_and_linked():
    items = [
        Verdict("patching", "Moves <straight>.", HOLDS, "a & b"),
        Verdict("circuit", "Small.", CANNOT_JUDGE, "gap 0.01"),
    ]
    box = verdict_html(items)
    assert box.count("<li class='verdict") == 2
    assert "<li class='verdict holds'>" in box and "<li class='verdict unjudged'>" in box
    assert "href='#patching'" in box and "Moves &lt;straight&gt;." in box and "a &amp; b" in box
    assert "1 holds, 1 cannot be judged" in box
    assert verdict_html([]) == ""
    assert items[0].to_json() == {
        "key": "patching",
        "finding": "Moves <straight>.",
        "verdict": HOLDS,
        "because": "a & b",
    }
