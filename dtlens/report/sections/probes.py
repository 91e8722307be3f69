"""Finding: what the residual stream holds at the decision token, read by linear probes.

The seed found by activation patching that the instruction, visible only in the first
observation, is moved to the decision square's state token. A probe asks the
representational question: at which depth is the instruction *linearly readable* at
that token, and is that more than the architecture gives for free?

On windows of scripted routes to the decision square
(:func:`~dtlens.analysis.probes.memory_windows`: the corridor walk with random detours
that keep the first observation in context, the four layouts balanced), a
logistic-regression probe is fitted at every depth of the residual stream
(:func:`~dtlens.analysis.probes.linear_probes`; seeded 70/30 split, 95 % Wilson
intervals), read at the last state token (the decision token), with two baselines: a
randomly initialised model of the same architecture, and shuffled labels.
Facts:

- ``instruction`` at the high RTG (the section's headline numbers);
- ``target_side`` (the side of the matching object: instruction XOR the target order)
  at the high RTG;
- ``instruction_any_rtg`` and ``rtg_bucket`` (4 equal bins) with the RTG drawn
  uniformly between the low and the high RTG;
- ``steps_to_decision`` at every step of the routes (high RTG).
"""

from __future__ import annotations

from dtlens.analysis.probes import (
    ProbeResult,
    linear_probes,
    memory_windows,
    random_model,
)
from dtlens.analysis.probes.layers import RANDOM_SEED
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.probes import hook_label, plot_probe_accuracy
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["N_ROUTES", "N_STEP_ROUTES", "READABLE", "RTG_BUCKETS", "run"]

#: scripted routes per data set of decision windows.
N_ROUTES = 400
#: routes whose every step is a window (the steps-to-decision probe).
N_STEP_ROUTES = 100
#: equal bins of the RTG range for the RTG-bucket probe.
RTG_BUCKETS = 4
#: the accuracy from which a fact counts as readable.
READABLE = 0.9
SEED_SAW = (
    "The seed did not probe. Activation patching on the instruction swap showed the "
    "instruction, visible only in the first real observation (S5), moved to the decision "
    "square's state token (S9), from which the action is predicted."
)


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: five probed facts, each at every residual depth, with baselines.

    Examples:
        >>> section = run(dtlens.load("memorydt"), ReportConfig())  # doctest: +SKIP
        >>> section.numbers["accuracy_by_layer"]["blocks.1.hook_resid_mid"]  # doctest: +SKIP
        1.0
    """
    high, low, seed = config.high_rtg, config.low_rtg, config.seed
    at_high = memory_windows(model, N_ROUTES, rtg=high, seed=seed)
    across = memory_windows(model, N_ROUTES, (low, high), seed + 1, n_rtg_buckets=RTG_BUCKETS)
    steps = memory_windows(model, N_STEP_ROUTES, rtg=high, seed=seed + 2, at="all")
    baseline = random_model(model, RANDOM_SEED + seed)

    def probe(data, fact: str) -> ProbeResult:
        return linear_probes(model, data, fact, seed=seed, baseline=baseline)

    results = {
        "instruction": probe(at_high, "instruction"),
        "target_side": probe(at_high, "target_side"),
        "instruction_any_rtg": probe(across, "instruction"),
        "rtg_bucket": probe(across, "rtg_bucket"),
        "steps_to_decision": probe(steps, "steps_to_decision"),
    }
    head = results["instruction"].to_dict()
    numbers = {
        "token": "S (last state token; the decision square facing the wall)",
        "rtg": high,
        "rtg_range": [low, high],
        "rtg_edges": [round(e, 4) for e in across.rtg_edges],
        "random_seed": RANDOM_SEED + seed,
        **{k: head[k] for k in ("n_windows", "n_test", "chance")},
        **{k: v for k, v in head.items() if k.endswith("by_layer")},
        "readable_from": _readable_from(results["instruction"]),
        "facts": {name: _summary(r) for name, r in results.items()},
    }
    figures = [
        results["instruction"].plot(
            title=f"The instruction at the decision token (RTG {high:g}): held-out accuracy "
            f"of a linear probe per depth, {head['n_test']} test windows"
        ),
        plot_probe_accuracy(
            [
                results[k]
                for k in ("target_side", "instruction_any_rtg", "rtg_bucket", "steps_to_decision")
            ],
            title="Other facts at the last state token: target side and the instruction "
            f"with RTG drawn from [{low:g}, {high:g}]; RTG bucket; steps to the decision square",
        ),
    ]
    return Section(
        "probes",
        "Linear probes: what the decision token holds, against a random model",
        figures,
        numbers,
        SEED_SAW,
        _describe(numbers, results),
    )


def _readable_from(result: ProbeResult) -> str | None:
    """The first hook where the trained model's probe reaches :data:`READABLE`."""
    for hook, accuracy in result.accuracy_by_layer.items():
        if accuracy >= READABLE:
            return hook
    return None


def _summary(result: ProbeResult) -> dict:
    d = result.to_dict()
    best = result.best_hook()
    return {
        "n_windows": d["n_windows"],
        "chance": d["chance"],
        "best_hook": best,
        "readable_from": _readable_from(result),
        "accuracy_by_layer": d["accuracy_by_layer"],
        "ci_by_layer": d["ci_by_layer"],
        "random_model_accuracy_by_layer": d["random_model_accuracy_by_layer"],
        "shuffled_accuracy_by_layer": d["shuffled_accuracy_by_layer"],
    }


def _describe(n: dict, results: dict[str, ProbeResult]) -> str:
    """The section's summary, written from its numbers."""
    acc = n["accuracy_by_layer"]
    rand = n["random_model_accuracy_by_layer"]
    shuf = n["shuffled_accuracy_by_layer"]
    ci = n["ci_by_layer"]
    best = results["instruction"].best_hook()
    if n["readable_from"] is None:
        text = (
            f"At the decision token the instruction is not linearly readable at any depth "
            f"(best {acc[best]:.2f} at {hook_label(best)}, chance {n['chance']:.2f}). "
        )
    else:
        first = n["readable_from"]
        text = (
            f"At the decision token the instruction becomes linearly readable at "
            f"{hook_label(first)}: {acc[first]:.2f} [{ci[first][0]:.2f}, {ci[first][1]:.2f}] "
            f"held-out accuracy ({n['n_test']} test windows; chance {n['chance']:.2f}). "
        )
    above = [h for h in acc if ci[h][0] > rand[h]]
    below = [h for h in acc if rand[h] - acc[h] >= 0.1]
    text += (
        f"A randomly initialised model of the same architecture reads {rand[best]:.2f} at "
        f"{hook_label(best)}, shuffled labels {shuf[best]:.2f}: "
    )
    text += (
        f"the trained model's interval lies above the random model at "
        f"{', '.join(hook_label(h) for h in above)}. "
        if above
        else "no interval of the trained model lies above the random model. "
    )
    if below:
        text += (
            f"Before that the random model reads more than the trained one "
            f"({', '.join(f'{hook_label(h)}: {rand[h]:.2f} vs {acc[h]:.2f}' for h in below)}): "
            "untrained attention mixes the first observation into every token, the trained "
            "model's decision token does not read it there. "
        )
    facts = n["facts"]
    parts = []
    for name, label in (
        ("target_side", "the target's side"),
        ("instruction_any_rtg", "the instruction with the RTG varied"),
        ("rtg_bucket", f"the RTG bucket ({RTG_BUCKETS} bins)"),
        ("steps_to_decision", "the steps to the decision square"),
    ):
        f = facts[name]
        h = f["best_hook"]
        parts.append(
            f"{label} {f['accuracy_by_layer'][h]:.2f} at {hook_label(h)} (random model "
            f"{f['random_model_accuracy_by_layer'][h]:.2f}, chance {f['chance']:.2f})"
        )
    return text + "Best depth for the other facts: " + "; ".join(parts) + "."
