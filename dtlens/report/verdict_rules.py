"""The rules of the verdict box: each seed finding, the section that decides it, and how.

:data:`FINDINGS` lists, in the report's order, every finding of the MemoryDT post (and of
its open questions) with the key of the report section whose numbers decide it and one
small rule: numbers -> (:data:`HOLDS` | :data:`DOES_NOT_HOLD` | :data:`CANNOT_JUDGE`,
the numbers behind it). Every threshold is a named constant here; where a section (or
the build's recipe) has a threshold of its own, the name here is imported from it.
:mod:`dtlens.report.verdict` applies the rules and draws the box.

Example:
    >>> key, finding, rule = FINDINGS[0]
    >>> key, rule({"at_high_rtg": {"rtg": 0.9, "success_rate": 1.0},
    ...            "at_low_rtg": {"rtg": 0.0, "success_rate": 0.0}})[0]
    ('calibration', 'holds')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dtlens.plotting import patching as patching_plots
from dtlens.report.sections.patching_text import ONE_TOKEN, best_token_is_small, seed_pattern
from dtlens.report.sections.probes import READABLE as PROBE_READABLE
from dtlens.report.sections.scrubbing import HOLDS as SCRUB_RECOVERED
from dtlens.report.sections.steering import RETARGETED, RTG_SLACK
from dtlens.training.recipe import Recipe

__all__ = [
    "CACHED_FORWARD",
    "CANNOT_JUDGE",
    "CLONE_SUCCESS",
    "DOES_NOT_HOLD",
    "FINDINGS",
    "HIGH_SUCCESS",
    "HOLDS",
    "LOW_SUCCESS",
    "NON_KINETIC_RISE",
    "PROBE_MARGIN",
    "PROBE_READABLE",
    "RETARGETED",
    "ROUTINE_CONFIDENCE",
    "RTG_SLACK",
    "SCRUB_CONTROL",
    "SCRUB_RECOVERED",
    "SCRUB_Z",
    "SIMULATES",
    "SMALL_CIRCUIT",
    "Numbers",
    "Rule",
]

#: the numbers show what the seed saw
HOLDS = "holds"
#: they show something else
DOES_NOT_HOLD = "does not hold"
#: they cannot decide it (a gap too small to divide by, missing pieces)
CANNOT_JUDGE = "cannot be judged"
#: Calibration: success at the high RTG at least this, and at the low RTG at most 1 - this.
HIGH_SUCCESS = 0.75
LOW_SUCCESS = 0.25
#: The set routine: every step of every high-RTG run at least this confident.
ROUTINE_CONFIDENCE = 0.9
#: A circuit is small when it has at most this share of the graph's edges.
SMALL_CIRCUIT = 0.1
#: Causal scrubbing: a hypothesis holds when it recovers at least :data:`SCRUB_RECOVERED`
#: of the metric (the scrubbing section's ``HOLDS``), its interval (this many standard
#: errors) clear of it on the side it falls ...
SCRUB_Z = 2.0
#: ... and the control head recovers less than this (else the decision does not need
#: the instruction through any one head, and nothing singles out the circuit's).
SCRUB_CONTROL = 0.5
#: Probes: a fact is readable from held-out accuracy :data:`PROBE_READABLE` (the probes
#: section's ``READABLE``); beyond the baselines when the trained model's interval lies
#: above both baselines' intervals. Overlapping intervals with the accuracy at least
#: this above both baselines cannot be judged (more windows needed).
PROBE_MARGIN = 0.1
#: Steering (judged by the steering section, its ``answer``): the target is retargeted
#: when the section's chosen cell sends at least :data:`RETARGETED` of the episodes to
#: the other object; the RTG still controls success when its control over reaching the
#: new target is at most :data:`RTG_SLACK` below the unsteered agent's over reaching
#: its own.
#: The cached decision: placed at the decision square turned towards the other target,
#: p(forward) above this in every layout but the look-back one (forward most likely).
CACHED_FORWARD = 0.5
#: Dummy actions: the mean mass on non-movement actions over every placed pose rises by
#: at least this from the high RTG to the low one.
NON_KINETIC_RISE = 0.1
#: Agent simulation: at the high RTG the DT's most likely action is the temperature-1
#: agent's on at least this share of the routine steps.
SIMULATES = 0.9
#: The clone solves the task: greedy success at least this in each layout (the build's
#: bar, ``Recipe.required_success_high``).
CLONE_SUCCESS = Recipe.required_success_high
#: The seed's look-back layout: the one exception to the cached decision.
_LOOK_BACK_LAYOUT = "key/top-key"

Numbers = Mapping[str, Any]


def _calibration(n: Numbers) -> tuple[str, str]:
    high, low = n["at_high_rtg"], n["at_low_rtg"]
    ok = high["success_rate"] >= HIGH_SUCCESS and low["success_rate"] <= LOW_SUCCESS
    because = (
        f"greedy success {high['success_rate']:.0%} at RTG {high['rtg']:g} and "
        f"{low['success_rate']:.0%} at RTG {low['rtg']:g} (holds from {HIGH_SUCCESS:.0%} "
        f"and up to {LOW_SUCCESS:.0%})"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


def _min_gap(n: Numbers) -> float:
    """The gap (logits) a section's pairs need: its own ``min_gap``, else the plotting's."""
    return n.get("min_gap", patching_plots.MIN_GAP)


def _high_low(rows: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """The rows at the highest RTG, and at the lowest (none when there is one RTG)."""
    rtgs = sorted({r["rtg"] for r in rows})
    high = [r for r in rows if r["rtg"] == rtgs[-1]]
    low = [r for r in rows if r["rtg"] == rtgs[0]] if len(rtgs) > 1 else []
    return high, low


def _set_routine(n: Numbers) -> tuple[str, str]:
    high, _ = _high_low(n["runs"])
    solved = sum(bool(r["success"]) for r in high)
    confidence = min(r["min_confidence"] for r in high)
    ok = solved == len(high) and confidence >= ROUTINE_CONFIDENCE
    because = (
        f"{solved}/{len(high)} layouts solved at RTG {high[0]['rtg']:g}; least confident step "
        f"p = {confidence:.2f} (holds from {ROUTINE_CONFIDENCE})"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


def _other_way(n: Numbers) -> tuple[str, str]:
    high, low = _high_low(n["runs"])
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
    case = [r for r in n["rows"] if r["layout"] == _LOOK_BACK_LAYOUT and r["rtg"] == top]
    if not case:
        return CANNOT_JUDGE, f"no {_LOOK_BACK_LAYOUT} run at the high RTG"
    turns = case[0]["n_turns"]
    reached = "" if case[0]["look_back"] or turns <= 1 else ", never reaching a target"
    because = f"{_LOOK_BACK_LAYOUT} at RTG {top:g}: {turns} turn(s){reached}"
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
    min_gap, final = _min_gap(n), n["final_token"]
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
    min_gap, gap = _min_gap(n), n["rtg_change_gap"]
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
    min_gap = _min_gap(n)
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


def _scrubbing(n: Numbers) -> tuple[str, str]:
    if n.get("error"):
        return CANNOT_JUDGE, f"no hypothesis could be scored: {n['error']}"
    rec, err = n["recovered"], n["stderr"]
    key = "instruction_via_circuit_heads"
    if key not in rec:
        return CANNOT_JUDGE, "the instruction swap moves no decision: no circuit heads to test"
    gap, min_gap = n["clean"] - n["resampled"], _min_gap(n)
    if abs(gap) < min_gap:
        return CANNOT_JUDGE, (
            f"clean {n['clean']:.2f} and resampled {n['resampled']:.2f} differ by "
            f"{abs(gap):.3f} < {min_gap:g} logits"
        )
    heads = ", ".join(n["circuit"]["layer0_heads"])
    main, low, high = rec[key], rec[key] - SCRUB_Z * err[key], rec[key] + SCRUB_Z * err[key]
    because = (
        f"instruction via {heads} recovers {main:.2f} ± {err[key]:.2f} (holds from "
        f"{SCRUB_RECOVERED}; clean {n['clean']:.2f}, resampled {n['resampled']:.2f})"
    )
    control = rec.get("control")
    if control is not None:
        because += (
            f"; control via {n['circuit']['control_head']} {control:.2f} ± "
            f"{err['control']:.2f} (must stay below {SCRUB_CONTROL})"
        )
    if low <= SCRUB_RECOVERED <= high:
        return CANNOT_JUDGE, because + f": the ±{SCRUB_Z:g} s.e. interval straddles the bar"
    if high < SCRUB_RECOVERED:
        return DOES_NOT_HOLD, because
    if control is not None and control >= SCRUB_CONTROL:
        return CANNOT_JUDGE, because + (
            ": the control recovers as well, so the decision does not need the instruction "
            "through any one head"
        )
    return HOLDS, because


def _probes(n: Numbers) -> tuple[str, str]:
    acc, ci = n["accuracy_by_layer"], n["ci_by_layer"]
    rand, rand_ci = n["random_model_accuracy_by_layer"], n["random_model_ci_by_layer"]
    shuf, shuf_ci = n["shuffled_accuracy_by_layer"], n["shuffled_ci_by_layer"]
    if not acc:
        raise ValueError("no probed hook")
    readable = [h for h in acc if acc[h] >= PROBE_READABLE]
    if not readable:
        best = max(acc, key=acc.get)
        return DOES_NOT_HOLD, (
            f"best held-out accuracy {acc[best]:.2f} at {best} (readable from "
            f"{PROBE_READABLE}; chance {n['chance']:.2f})"
        )
    beyond = [h for h in readable if ci[h][0] > max(rand_ci[h][1], shuf_ci[h][1])]
    h = beyond[0] if beyond else max(readable, key=lambda k: acc[k] - max(rand[k], shuf[k]))

    def interval(value: float, bounds: Sequence[float]) -> str:
        return f"{value:.2f} [{bounds[0]:.2f}, {bounds[1]:.2f}]"

    because = (
        f"at {h}: trained {interval(acc[h], ci[h])}, random model "
        f"{interval(rand[h], rand_ci[h])}, shuffled labels {interval(shuf[h], shuf_ci[h])} "
        f"({n['n_test']} held-out windows; readable from {PROBE_READABLE})"
    )
    if beyond:
        return HOLDS, because + ": the trained interval lies above both baselines'"
    if acc[h] - max(rand[h], shuf[h]) >= PROBE_MARGIN:
        return CANNOT_JUDGE, because + ": the intervals overlap, though the accuracies differ"
    return DOES_NOT_HOLD, because + ": a baseline reads it about as well"


def _steered(n: Numbers) -> tuple[str, float, dict]:
    """The direction the section steered by (``steered_by``), its best cell's retarget
    rate and that cell."""
    cell = n["steered_by"]
    return cell["direction"], n["best"][cell["direction"]]["retarget_rate"], cell


def _retargeted(n: Numbers) -> tuple[str, str]:
    fact, rate, cell = _steered(n)
    others = ", ".join(
        f"{f} at most {b['retarget_rate']:.0%}" for f, b in n["best"].items() if f != fact
    )
    because = (
        f"along the {fact} direction at {cell['hook']}, coefficient {cell['coef']:g}, "
        f"{rate:.0%} of {n['n_episodes']} episodes at RTG {n['rtgs'][0]:g} end at the other "
        f"object (holds from {RETARGETED:.0%})" + (f"; {others}" if others else "")
    )
    return (HOLDS if n["answer"]["retargeted"] else DOES_NOT_HOLD), because


def _rtg_still_controls(n: Numbers) -> tuple[str, str]:
    fact, rate, cell = _steered(n)
    if not n["answer"]["retargeted"]:
        return CANNOT_JUDGE, (
            f"no cell retargets {RETARGETED:.0%} of the episodes (best {rate:.0%}): there is "
            "no new target to test"
        )
    control = n["rtg_control"]
    high, low = (f"{r:g}" for r in n["rtgs"])
    because = (
        f"steered along {fact} at {cell['hook']} (coefficient {cell['coef']:g}), the new "
        f"target is reached in {n['new_target_at_rtg'][high]:.0%} of episodes at RTG {high} "
        f"and {n['new_target_at_rtg'][low]:.0%} at RTG {low}: RTG control "
        f"{control['steered']:.2f} against {control['unsteered']:.2f} unsteered (holds down "
        f"to {RTG_SLACK:g} below it)"
    )
    if control["unsteered"] <= 0:
        return CANNOT_JUDGE, because + "; the RTG does not control success even unsteered"
    return (HOLDS if n["answer"]["rtg_still_controls"] else DOES_NOT_HOLD), because


def _cached_decision(n: Numbers) -> tuple[str, str]:
    high, _ = _high_low(n["summary"])
    judged = [r for r in high if r["layout"] != _LOOK_BACK_LAYOUT]
    if not judged:
        return CANNOT_JUDGE, f"no layout but {_LOOK_BACK_LAYOUT} was mapped"
    ok = min(r["turned_wrong_forward"] for r in judged) > CACHED_FORWARD
    because = (
        f"at RTG {high[0]['rtg']:g}, placed at the decision square turned towards the other "
        "target, p(forward): "
        + ", ".join(
            f"{r['layout']} {r['turned_wrong_forward']:.2f}"
            + (" (the look-back layout, not judged)" if r["layout"] == _LOOK_BACK_LAYOUT else "")
            for r in high
        )
        + f" (holds above {CACHED_FORWARD:g} in each judged layout)"
    )
    return (HOLDS if ok else DOES_NOT_HOLD), because


def _dummy_actions(n: Numbers) -> tuple[str, str]:
    high, low = _high_low(n["summary"])
    if not low:
        return CANNOT_JUDGE, "the section mapped one RTG only"

    def mean(rows: list[dict]) -> float:
        return sum(r["non_movement"] for r in rows) / len(rows)

    at_high, at_low = mean(high), mean(low)
    poses = n.get("placement", {}).get("poses_per_layout", "all")
    because = (
        f"mean mass on non-movement actions over {poses} placed poses: {at_low:.2f} at RTG "
        f"{low[0]['rtg']:g} vs {at_high:.2f} at RTG {high[0]['rtg']:g} (holds from a rise of "
        f"{NON_KINETIC_RISE:g})"
    )
    return (HOLDS if at_low - at_high >= NON_KINETIC_RISE else DOES_NOT_HOLD), because


def _simulates(n: Numbers) -> tuple[str, str]:
    agent, (high, _) = n["agents"][0], n["rtgs"][:2]
    agree = n["agreement"][agent][high]
    if agree["routine"] is None:
        return CANNOT_JUDGE, "the episodes have no routine steps"
    in_window = n["decision_in_context"]["agreement"][agent][high]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    because = (
        f"at {high} the DT takes {agent}'s most likely action on {pct(agree['routine'])} of "
        f"{n['n_steps']['routine']} routine steps (holds from {SIMULATES:.0%}); at the "
        f"decision square {pct(agree['decision'])} ({pct(in_window)} while the instruction "
        "is in its window)"
    )
    if "PPO LSTM" in n["agreement"]:
        lstm = n["agreement"]["PPO LSTM"][high]
        because += (
            f"; the PPO LSTM: {pct(lstm['routine'])} routine, {pct(lstm['decision'])} decision"
        )
    else:
        because += "; the PPO LSTM checkpoint was not found"
    return (HOLDS if agree["routine"] >= SIMULATES else DOES_NOT_HOLD), because


def _hot_agent(n: Numbers) -> tuple[str, str]:
    if len(n["agents"]) < 2:
        return CANNOT_JUDGE, "only one agent temperature was compared"
    cool, hot = n["agents"][:2]
    high, low = n["rtgs"][:2]
    kl, ci = n["kl"], n["kl_ci"]
    hot_low, hot_high, cool_low = kl[hot][low]["all"], kl[hot][high]["all"], kl[cool][low]["all"]
    if None in (hot_low, hot_high, cool_low):
        return CANNOT_JUDGE, "no steps to compare on"
    because = (
        f"over all steps KL({hot} || DT) is {hot_low:.2f} nats at {low} "
        f"[{ci[hot][low]['all'][0]:.2f}, {ci[hot][low]['all'][1]:.2f}] vs {hot_high:.2f} at "
        f"{high} [{ci[hot][high]['all'][0]:.2f}, {ci[hot][high]['all'][1]:.2f}]; "
        f"KL({cool} || DT) at {low}: {cool_low:.2f}"
    )
    if not (hot_low < hot_high and hot_low < cool_low):
        return DOES_NOT_HOLD, because
    if ci[hot][low]["all"][1] >= ci[hot][high]["all"][0]:
        return CANNOT_JUDGE, because + ": the intervals overlap"
    return HOLDS, because


def _clone(n: Numbers) -> tuple[str, str]:
    if "clone" not in n:
        return CANNOT_JUDGE, f"no clone to compare: {n.get('reason', 'not available')}"
    clone, dt = n["clone"], n.get("decision_transformer")

    def solved(m: Numbers) -> str:
        by_layout = m["success_by_layout"]
        return f"{sum(v >= CLONE_SUCCESS for v in by_layout.values())}/{len(by_layout)}"

    by_layout = clone["success_by_layout"]
    if not by_layout:
        raise ValueError("no layout played")
    because = (
        f"the clone solves {solved(clone)} layouts greedily (holds when all do, at "
        f"{CLONE_SUCCESS:.0%} or more), decision-square logit difference "
        f"{clone['decision_logit_diff']:+.2f}"
    )
    if dt is not None:
        because += f"; the DT at RTG {dt['rtg']:g}: {solved(dt)}, {dt['decision_logit_diff']:+.2f}"
    else:
        because += "; no decision transformer to compare with"
    ok = min(by_layout.values()) >= CLONE_SUCCESS
    return (HOLDS if ok else DOES_NOT_HOLD), because


Rule = Callable[[Numbers], tuple[str, str]]
#: (section key, the seed's finding, rule), in the report's order.
FINDINGS: tuple[tuple[str, str, Rule], ...] = (
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
    (
        "scrubbing",
        "Causal scrubbing: the instruction reaches the decision only through the circuit's "
        "layer-0 head(s).",
        _scrubbing,
    ),
    (
        "probes",
        "The instruction is linearly readable at the decision token, beyond a random model "
        "and shuffled labels.",
        _probes,
    ),
    (
        "steering",
        "Retargeting the search: adding a direction at the decision token sends the agent "
        "to the other object.",
        _retargeted,
    ),
    (
        "steering",
        "Steered to the other object, the RTG still decides whether the agent reaches it.",
        _rtg_still_controls,
    ),
    (
        "maps",
        "A cached decision: turned at the decision square, even towards the other target, "
        "it goes forward (look-back layout aside).",
        _cached_decision,
    ),
    (
        "maps",
        "At RTG 0 it puts mass on non-movement actions (pickup, drop, toggle, done).",
        _dummy_actions,
    ),
    (
        "agent_comparison",
        "The DT simulates its demonstrator: at the high RTG it takes the temperature-1 "
        "agent's action on the routine.",
        _simulates,
    ),
    (
        "agent_comparison",
        "RTG 0 simulates the hot agent: the DT comes closest to the temperature-5 agent.",
        _hot_agent,
    ),
    (
        "clone",
        "A behavioural clone (no RTG) on the same demonstrations solves every layout.",
        _clone,
    ),
)
