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


def test_only_sections_that_ran_and_malformed_numbers_cannot_be_judged():
    assert verdicts({}) == []
    assert verdicts({"dynamics": {"recorded": False}, "maps": {}}) == []
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
