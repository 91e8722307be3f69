"""Finding: can the target be retargeted by steering, independently of the RTG?

The seed hoped to "retarget the search" and asked how the RTG's control over success
relates to the target. Here the question is answered by behaviour. From windows ending
at the decision square (:func:`~dtlens.analysis.probes.memory_windows`, high RTG), a
difference-of-means direction is taken at the decision token at every depth of the
residual stream after the first attention, for two facts: the ``instruction``
(key -> ball) and the ``target_side`` (top -> bottom: the turn the decision needs).
Each is added at the last token of every forward during greedy play
(:func:`~dtlens.analysis.steering.steer` inside the rollout), pushing every layout
towards the other value, for every coefficient of :data:`COEFFICIENTS` (1 = the class
means' gap) (:func:`~dtlens.analysis.steering.steering_sweep`):

- the **retarget rate**: the share of episodes at the high RTG ending at the other object;
- whether **the RTG still controls success**: played at the low RTG as well (in every
  cell retargeting at least half the episodes), the steered agent should reach its new
  target at the high RTG and not at the low one, as the unsteered agent does with its
  own target.

The target can be retargeted independently of the RTG when some cell retargets at
least :data:`RETARGETED` of the episodes and keeps the RTG's control over reaching the
(new) target to within :data:`RTG_SLACK` of the unsteered agent's.
"""

from __future__ import annotations

import torch

from dtlens.analysis.probes import ProbeData, memory_windows, probe_activations, residual_hooks
from dtlens.analysis.steering import SteeringResult, fact_directions, steering_sweep
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.probes import hook_label
from dtlens.plotting.steering import plot_steering, plot_steering_success
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, round_value

__all__ = ["COEFFICIENTS", "FACTS", "N_ROUTES", "RETARGETED", "RTG_SLACK", "run"]

#: the coefficients swept (multiples of the class means' gap).
COEFFICIENTS = (0.5, 1.0, 2.0, 4.0)
#: the directions steered along.
FACTS = ("instruction", "target_side")
#: scripted decision windows the directions are taken from.
N_ROUTES = 400
#: the retarget rate from which the target counts as retargeted.
RETARGETED = 0.75
#: how much less the RTG may control reaching the new target than the old (one layout of 4).
RTG_SLACK = 0.25
SEED_SAW = (
    "The seed listed retargeting the search as future work (turning RTG-dependent behaviour "
    "off, or on only for the key) and observed that the RTG alone switches the target: at "
    "RTG 0 the model turns the other way and walks to the other object."
)


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: two directions x depths x coefficients, played greedily.

    Examples:
        >>> section = run(dtlens.load("memorydt"), ReportConfig())  # doctest: +SKIP
        >>> section.numbers["answer"]["independent_of_rtg"]  # doctest: +SKIP
        True
    """
    high, low = config.high_rtg, config.low_rtg
    data = memory_windows(model, N_ROUTES, rtg=high, seed=config.seed)
    hooks = residual_hooks(model)[1:]  # the decision square's embedding holds neither fact
    sweeps: dict[str, SteeringResult] = {}
    for fact in FACTS:
        directions = fact_directions(model, data, fact, hooks)
        sweeps[fact] = steering_sweep(
            model,
            directions,
            fact,
            COEFFICIENTS,
            (high, low),
            max_steps=config.max_steps,
            seed=config.seed,
        )
    chosen = max(FACTS, key=lambda f: (_best_rate(sweeps[f]), -FACTS.index(f)))
    result = sweeps[chosen]
    hook, coef = result.best()
    control = result.rtg_control()
    retargeted = _best_rate(result) >= RETARGETED
    keeps = control["unsteered"] > 0 and control["steered"] >= control["unsteered"] - RTG_SLACK
    per_fact = {fact: s.to_dict() for fact, s in sweeps.items()}
    numbers = {
        "rtgs": [high, low],
        "coefficients": list(COEFFICIENTS),
        "positions": "last",
        "n_episodes": result.n_episodes,
        "retarget_rate": {f: d["retarget_rate"] for f, d in per_fact.items()},
        "neither_at_high_rtg": {f: d["neither_at_high_rtg"] for f, d in per_fact.items()},
        "new_target_at_low_rtg": {f: d["new_target_at_low_rtg"] for f, d in per_fact.items()},
        "direction_norm": {f: d["direction_norm"] for f, d in per_fact.items()},
        "instruction_cosine_across_orders": _order_cosines(model, data, hooks),
        "best": {
            f: {
                **d["best"],
                "retarget_rate": round_value(_best_rate(sweeps[f])),
                "rtg_control": d["rtg_control"],
            }
            for f, d in per_fact.items()
        },
        "steered_by": {"direction": chosen, "hook": hook, "coef": coef},
        "success_at_rtg": per_fact[chosen]["success_at_rtg"],
        "new_target_at_rtg": per_fact[chosen]["new_target_at_rtg"],
        "rtg_control": per_fact[chosen]["rtg_control"],
        "answer": {
            "retargeted": bool(retargeted),
            "rtg_still_controls": bool(keeps),
            "independent_of_rtg": bool(retargeted and keeps),
        },
    }
    figures = [
        plot_steering(
            sweeps[fact],
            title=f"Steering along the {fact} direction at the decision token: share of "
            f"{result.n_episodes} greedy episodes at the other object",
        )
        for fact in sorted(FACTS, key=lambda f: f != chosen)  # the chosen direction first
    ]
    figures.append(plot_steering_success(result))
    return Section(
        "steering",
        "Steering: retargeting the agent, and what the RTG still controls",
        figures,
        numbers,
        SEED_SAW,
        _describe(numbers, sweeps),
    )


def _order_cosines(
    model: HookedDecisionTransformer, data: ProbeData, hooks: list[str]
) -> dict[str, float]:
    """Per hook: the cosine between the key -> ball differences of means at the decision
    token taken within each target order (1: the instruction on its own; -1: it flips
    with the order, i.e. the token holds the side to turn to)."""
    instruction = torch.as_tensor(data.labels["instruction"])
    top = instruction ^ torch.as_tensor(data.labels["target_side"])  # the upper object
    acts = probe_activations(model, data, hooks)
    out = {}
    for hook in hooks:
        a = acts[hook]
        gaps = [
            a[(instruction == 1) & (top == t)].mean(0) - a[(instruction == 0) & (top == t)].mean(0)
            for t in (0, 1)
        ]
        out[hook] = round_value(torch.cosine_similarity(gaps[0], gaps[1], dim=0))
    return out


def _best_rate(result: SteeringResult) -> float:
    hook, coef = result.best()
    return result.retarget_rate[hook][coef]


def _describe(n: dict, sweeps: dict[str, SteeringResult]) -> str:
    """The section's summary, written from its numbers."""
    high, low = n["rtgs"]
    parts = []
    for fact in FACTS:
        b = n["best"][fact]
        parts.append(
            f"along the {fact} direction at most {b['retarget_rate']:.0%} of episodes go to the "
            f"other object (best: {hook_label(b['hook'])}, coefficient {b['coef']:g})"
        )
    text = "Steering at the decision token, " + "; ".join(parts) + ". "
    rates = {fact: n["best"][fact]["retarget_rate"] for fact in FACTS}
    cos = n["instruction_cosine_across_orders"]
    kept = [f"{hook_label(h)} (cosine {c:.2f})" for h, c in cos.items() if c >= 0.9]
    flips = [f"{hook_label(h)} (cosine {c:.2f})" for h, c in cos.items() if c <= -0.9]
    if kept or flips:
        text += "The key-to-ball difference at the decision token, taken within each target "
        text += "order, " + "; ".join(
            part
            for part in (
                f"keeps its direction across the orders at {', '.join(kept)}" if kept else "",
                f"flips with the order at {', '.join(flips)}" if flips else "",
            )
            if part
        )
        text += ". "
    if rates["target_side"] >= RETARGETED and rates["instruction"] < 0.5:
        text += (
            "Only the target-side direction retargets: what the decision token carries that "
            "steers the choice is the side to turn to, not the instruction on its own. "
        )
    s = n["steered_by"]
    success, new = n["success_at_rtg"], n["new_target_at_rtg"]
    hi, lo = f"{high:g}", f"{low:g}"
    text += (
        f"With the {s['direction']} direction at {hook_label(s['hook'])} (coefficient "
        f"{s['coef']:g}), success is {success['steered'][hi]:.0%} at RTG {hi} and "
        f"{success['steered'][lo]:.0%} at RTG {lo} (unsteered {success['unsteered'][hi]:.0%} "
        f"and {success['unsteered'][lo]:.0%}); the new target is reached in "
        f"{new[hi]:.0%} and {new[lo]:.0%} of episodes. "
    )
    answer = n["answer"]
    if answer["independent_of_rtg"]:
        text += (
            "So yes: the target can be retargeted independently of the RTG. The steered agent "
            "goes to the other object, and the RTG still decides whether it gets there (RTG "
            f"control {n['rtg_control']['steered']:.2f} steered vs "
            f"{n['rtg_control']['unsteered']:.2f} unsteered)."
        )
    elif answer["retargeted"]:
        text += (
            "The target is retargeted, but not independently of the RTG: steered, the RTG "
            f"controls reaching the new target by {n['rtg_control']['steered']:.2f}, against "
            f"{n['rtg_control']['unsteered']:.2f} for the instructed target unsteered."
        )
    else:
        text += (
            f"No direction and coefficient retargets {RETARGETED:.0%} of the episodes: on this "
            "model the target could not be retargeted by activation addition at the decision "
            "token."
        )
    return text
