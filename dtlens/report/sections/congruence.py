"""Finding: neuron-action congruence grows with depth, most for Left, Right and Forward.

The seed (following Miller & Neo's "We found an neuron in GPT-2"): congruence of an MLP
neuron with an action is the product of the neuron's output weights and the action's
unembedding, ``W_out[l] @ W_U``; a strip plot of every neuron-action pair by layer shows
Left, Right and Forward gaining more, and more strongly, congruent neurons with depth.

Here: the same table (raw ``W_out @ W_U``, as the seed computed it; the LayerNorm-folded
variant is in the numbers), its strip plot, and its per-layer growth.
"""

from __future__ import annotations

from dtlens.analysis.weights.congruence import congruence, per_layer_growth
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_congruence, plot_congruence_growth
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["GROWTH_ACTIONS", "run"]

GROWTH_ACTIONS = ("left", "right", "forward")
SEED_SAW = (
    "Left, Right and Forward all have more congruent neurons as the layers increase, and "
    "the magnitude of the congruence also increases."
)


def _growth(model: HookedDecisionTransformer, fold_ln: bool) -> dict[str, list[float]]:
    growth = per_layer_growth(congruence(model, fold_ln=fold_ln), GROWTH_ACTIONS, "max_abs")
    return {
        action: [round(float(v), 4) for v in growth.values[:, i]]
        for i, action in enumerate(GROWTH_ACTIONS)
    }


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: strip plot, growth lines, per-layer max |congruence|."""
    table = congruence(model, fold_ln=False)
    growth = per_layer_growth(table, GROWTH_ACTIONS, "max_abs")
    figures = [
        plot_congruence(
            table.values.detach(),
            title="Congruence of every neuron-action pair (W_out @ W_U), by layer",
        ),
        plot_congruence_growth(
            growth.values.detach(),
            action_names=list(GROWTH_ACTIONS),
            title="Largest |congruence| per layer",
        ),
    ]
    raw = _growth(model, fold_ln=False)
    grows = {a: all(b > c for b, c in zip(v[1:], v[:-1], strict=False)) for a, v in raw.items()}
    this_model = (
        "Largest |congruence| per layer: "
        + "; ".join(f"{a} " + " -> ".join(f"{x:.2f}" for x in raw[a]) for a in GROWTH_ACTIONS)
        + ". It grows with every layer for "
        + (", ".join(a for a, g in grows.items() if g) or "none of them")
        + "."
    )
    return Section(
        key="congruence",
        title="Congruence grows with layer",
        figures=figures,
        numbers={
            "max_abs_by_layer": raw,
            "max_abs_by_layer_ln_folded": _growth(model, fold_ln=True),
            "grows_every_layer": grows,
        },
        seed_saw=SEED_SAW,
        this_model=this_model,
    )
