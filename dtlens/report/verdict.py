"""The verdict box that opens the report: which of the seed's findings hold on this model.

Each finding of the MemoryDT post is judged from the numbers of the section that
reproduces it (``Section.numbers``, plain JSON), never from its text, by one small rule
stated in the verdict's ``because``:

- ``holds``: the numbers show what the seed saw;
- ``does not hold``: they show something else;
- ``cannot be judged``: they cannot decide it, e.g. the patching pairs' clean and
  corrupt decisions differ by less than the section's ``min_gap`` logits (the restored
  fractions would divide by almost nothing), or the section is missing pieces.

A finding whose section was not run is left out. :func:`verdicts` makes the list,
:func:`verdict_html` the box.

Examples:
    >>> numbers = {"congruence": {"grows_every_layer": {"left": True, "right": False}}}
    >>> [(v.key, v.verdict) for v in verdicts(numbers)]
    [('congruence', 'does not hold')]
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dtlens.report.sections.patching_text import ONE_TOKEN, best_token_is_small, seed_pattern

__all__ = [
    "CANNOT_JUDGE",
    "DOES_NOT_HOLD",
    "HIGH_SUCCESS",
    "HOLDS",
    "LOW_SUCCESS",
    "ROUTINE_CONFIDENCE",
    "SMALL_CIRCUIT",
    "Verdict",
    "verdict_html",
    "verdicts",
]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
CANNOT_JUDGE = "cannot be judged"
#: Calibration: success at the high RTG at least this, and at the low RTG at most 1 - this.
HIGH_SUCCESS = 0.75
LOW_SUCCESS = 0.25
#: The set routine: every step of every high-RTG run at least this confident.
ROUTINE_CONFIDENCE = 0.9
#: A circuit is small when it has at most this share of the graph's edges.
SMALL_CIRCUIT = 0.1
#: The gap a patching section's pairs need, when its numbers do not say (logits).
_DEFAULT_MIN_GAP = 0.5

Numbers = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """One finding of the seed, judged on this model.

    Attributes:
        key: the report section whose numbers decide it (its anchor on the page).
        finding: the seed's finding, in one sentence.
        verdict: :data:`HOLDS`, :data:`DOES_NOT_HOLD` or :data:`CANNOT_JUDGE`.
        because: the numbers behind the verdict.
    """

    key: str
    finding: str
    verdict: str
    because: str

    def to_json(self) -> dict[str, str]:
        """The verdict as a JSON-ready dict."""
        return asdict(self)


def verdicts(numbers: Mapping[str, Numbers]) -> list[Verdict]:
    """Judge every finding whose section is in ``numbers`` (section key -> its numbers).

    Examples:
        >>> cal = {"at_high_rtg": {"rtg": 0.9, "success_rate": 1.0},
        ...        "at_low_rtg": {"rtg": 0.0, "success_rate": 0.0}}
        >>> verdicts({"calibration": cal})[0].verdict
        'holds'
    """
    out = []
    for key, finding, rule in _FINDINGS:
        if key in numbers:
            try:
                verdict, because = rule(numbers[key])
            except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as err:
                verdict, because = (
                    CANNOT_JUDGE,
                    f"the section's numbers lack what it needs ({err!r})",
                )
            out.append(Verdict(key, finding, verdict, because))
    return out


# ------------------------------------------------------------------------------ rules
def _calibration(n: Numbers) -> tuple[str, str]:
    high, low = n["at_high_rtg"], n["at_low_rtg"]
    ok = high["success_rate"] >= HIGH_SUCCESS and low["success_rate"] <= LOW_SUCCESS
    because = (
        f"greedy success {high['success_rate']:.0%} at RTG {high['rtg']:g} and "
        f"{low['success_rate']:.0%} at RTG {low['rtg']:g} (holds from {HIGH_SUCCESS:.0%} "
        f"and up to {LOW_SUCCESS:.0%})"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


def _runs_at(n: Numbers) -> tuple[list[dict], list[dict]]:
    rtgs = sorted({r["rtg"] for r in n["runs"]})
    high = [r for r in n["runs"] if r["rtg"] == rtgs[-1]]
    low = [r for r in n["runs"] if r["rtg"] == rtgs[0]] if len(rtgs) > 1 else []
    return high, low


def _set_routine(n: Numbers) -> tuple[str, str]:
    high, _ = _runs_at(n)
    solved = sum(bool(r["success"]) for r in high)
    confidence = min(r["min_confidence"] for r in high)
    ok = solved == len(high) and confidence >= ROUTINE_CONFIDENCE
    because = (
        f"{solved}/{len(high)} layouts solved at RTG {high[0]['rtg']:g}; least confident step "
        f"p = {confidence:.2f} (holds from {ROUTINE_CONFIDENCE})"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


def _other_way(n: Numbers) -> tuple[str, str]:
    high, low = _runs_at(n)
    if not low:
        return CANNOT_JUDGE, "the section ran one RTG only"
    turn = {r["layout"]: r["decision"] for r in high}
    if any(turn.get(r["layout"]) is None for r in low):
        return CANNOT_JUDGE, "some high-RTG run never turns, so 'the other way' is undefined"
    flipped = [
        r["layout"]
        for r in low
        if r["decision"] in ("left", "right") and r["decision"] != turn[r["layout"]]
    ]
    turns = ", ".join(f"{r['layout']} {r['decision'] or 'no turn'}" for r in low)
    because = (
        f"first turns at RTG {low[0]['rtg']:g}: {turns}; {len(flipped)}/{len(low)} opposite to "
        "the high-RTG turn"
    )
    return (HOLDS if len(flipped) == len(low) else DOES_NOT_HOLD), because


def _look_back(n: Numbers) -> tuple[str, str]:
    top = max(r["rtg"] for r in n["rows"])
    case = [r for r in n["rows"] if r["layout"] == "key/top-key" and r["rtg"] == top]
    if not case:
        return CANNOT_JUDGE, "no key/top-key run at the high RTG"
    turns = case[0]["n_turns"]
    reached = "" if case[0]["look_back"] or turns <= 1 else ", never reaching a target"
    because = f"key/top-key at RTG {top:g}: {turns} turn(s){reached}"
    return (HOLDS if case[0]["look_back"] else DOES_NOT_HOLD), because


def _rtg_entropy(n: Numbers) -> tuple[str, str]:
    parts, ok = [], True
    for where, by_rtg in n["mean_entropy"].items():
        rtgs = sorted(by_rtg, key=lambda k: float(k.split()[-1]))
        low, high = by_rtg[rtgs[0]], by_rtg[rtgs[-1]]
        ok = ok and low > high
        parts.append(f"{where}: {low:.2f} nats at {rtgs[0]} vs {high:.2f} at {rtgs[-1]}")
    return (HOLDS if ok and parts else DOES_NOT_HOLD), "; ".join(parts)


def _attention(n: Numbers) -> tuple[str, str]:
    mass = n["heads"]["L0H0"]["mass_high_rtg"]
    states, rtg = mass["S->S"], mass["S->R"]
    because = f"L0H0's state queries at the high RTG: {states:.2f} on states, {rtg:.2f} on RTGs"
    return (HOLDS if states > rtg else DOES_NOT_HOLD), because


def _congruence(n: Numbers) -> tuple[str, str]:
    grows = n["grows_every_layer"]
    because = "grows with every layer: " + ", ".join(
        f"{action} {'yes' if up else 'no'}" for action, up in grows.items()
    )
    return (HOLDS if grows and all(grows.values()) else DOES_NOT_HOLD), because


def _instruction_moves(n: Numbers) -> tuple[str, str]:
    min_gap, final = n.get("min_gap", _DEFAULT_MIN_GAP), n["final_token"]
    judged, parts = [], []
    for label, gap in n["instruction_swap_gap"].items():
        if gap < min_gap:
            parts.append(f"{label}: gap {gap:.3f} < {min_gap:g} logits, not judged")
            continue
        mean = n["instruction_swap_mean"][label]
        judged.append(seed_pattern(mean, final))
        parts.append(
            f"{label}: hand-off layer {mean['handoff_layer']}, peaks "
            f"{', '.join(mean['peak_by_layer'])}, most between {mean['most_between']:.2f}"
        )
    if not judged:
        return CANNOT_JUDGE, "; ".join(parts)
    return (HOLDS if all(judged) else DOES_NOT_HOLD), "; ".join(parts)


def _rtg_collected(n: Numbers) -> tuple[str, str]:
    min_gap, gap = n.get("min_gap", _DEFAULT_MIN_GAP), n["rtg_change_gap"]
    if gap < min_gap:
        return CANNOT_JUDGE, f"the RTG change moves the decision by {gap:.3f} < {min_gap:g} logits"
    mean = n["rtg_change_mean"]
    tokens = mean["layer0_rtg_tokens"]
    final = mean["at_final_by_layer"][-1]
    largest = max((abs(v) for v in tokens.values()), default=0.0)
    ok = best_token_is_small(tokens) and final > 0.5
    because = (
        f"largest single RTG token at layer 0 restores {largest:.2f} (needs < {ONE_TOKEN}); "
        f"{n['final_token']} before the last layer restores {final:.2f} (needs > 0.5)"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


def _weak_instruction(n: Numbers) -> str | None:
    """Why a section on the instruction-swap pairs cannot be judged, or None."""
    min_gap = n.get("min_gap", _DEFAULT_MIN_GAP)
    if not n["layouts"]:
        return "the instruction swap moves no layout's decision: nothing to patch"
    if n["instruction_gap"] < min_gap:
        gap = n["instruction_gap"]
        return f"the instruction swap moves the decision by {gap:.3f} < {min_gap:g} logits"
    return None


def _one_hop(n: Numbers) -> tuple[str, str]:
    weak = _weak_instruction(n)
    if weak:
        return CANNOT_JUDGE, weak
    ratio = n["intermediate_over_one_hop"]
    if ratio is None:
        return CANNOT_JUDGE, "neither one-hop route restores anything"
    because = f"the tokens between carry {ratio:.0%} of the larger one-hop route"
    return (HOLDS if n["claim_holds"] else DOES_NOT_HOLD), because


def _small_circuit(n: Numbers) -> tuple[str, str]:
    weak = _weak_instruction(n)
    if weak:
        return CANNOT_JUDGE, weak
    total, edges = n["n_edges_total"], n["n_edges"]
    if edges is None:
        return DOES_NOT_HOLD, f"no top-k set of EAP-IG's edges keeps {n['target']:.0%}"
    ok = edges <= SMALL_CIRCUIT * total
    because = (
        f"EAP-IG's top {edges} of {total} edges keep {n['faithfulness']:.2f} "
        f"(small: at most {SMALL_CIRCUIT:.0%} of the edges)"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


_Rule = Callable[[Numbers], tuple[str, str]]
#: (section key, the seed's finding, rule), in the report's order.
_FINDINGS: tuple[tuple[str, str, _Rule], ...] = (
    (
        "calibration",
        "The RTG decides success: it solves at a high RTG, fails at RTG 0.",
        _calibration,
    ),
    (
        "set_routine",
        "A set routine: every layout solved at the high RTG, each step with high confidence.",
        _set_routine,
    ),
    ("set_routine", "At RTG 0 it turns the other way at the decision square.", _other_way),
    (
        "look_back",
        "The 'look back' exception: in key/top-key at RTG 0.9 it turns more than once.",
        _look_back,
    ),
    (
        "rtg_entropy",
        "RTG 0 makes the action distribution more diffuse (higher entropy).",
        _rtg_entropy,
    ),
    ("attention", "In L0H0, states attend to states rather than to RTG tokens.", _attention),
    (
        "congruence",
        "Neuron-action congruence grows with depth for left, right, forward.",
        _congruence,
    ),
    (
        "patching",
        "Activation patching: the instruction moves from S5 straight to S9 at layer 1.",
        _instruction_moves,
    ),
    (
        "patching",
        "The RTG is collected from many tokens into S9, not read from one.",
        _rtg_collected,
    ),
    (
        "path_patching",
        "Path patching: the instruction reaches S9 in one attention hop.",
        _one_hop,
    ),
    (
        "circuit",
        "A small circuit (EAP-IG, exact faithfulness >= 90%) carries the instruction.",
        _small_circuit,
    ),
)


# ------------------------------------------------------------------------------- html
_CLASS = {HOLDS: "holds", DOES_NOT_HOLD: "fails", CANNOT_JUDGE: "unjudged"}


def verdict_html(items: Sequence[Verdict]) -> str:
    """The verdict box: one line per finding (verdict, finding, the numbers behind it).

    Examples:
        >>> box = verdict_html([Verdict("congruence", "It grows.", HOLDS, "left yes")])
        >>> "class='verdict holds'" in box and "href='#congruence'" in box
        True
    """
    if not items:
        return ""
    counts = {
        v: sum(item.verdict == v for item in items) for v in (HOLDS, DOES_NOT_HOLD, CANNOT_JUDGE)
    }
    rows = "".join(
        f"<li class='verdict {_CLASS[item.verdict]}'><span class='tag'>{html.escape(item.verdict)}"
        f"</span> <a href='#{html.escape(item.key)}'>{html.escape(item.finding)}</a> "
        f"<span class='because'>({html.escape(item.because)})</span></li>"
        for item in items
    )
    summary = ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count)
    return (
        "<div class='verdicts' id='verdict'><h2>Verdict: the seed's findings on this model</h2>"
        f"<p class='meta'>{html.escape(summary)}; each line is computed from its section's "
        f"numbers.</p><ul>{rows}</ul></div>"
    )
