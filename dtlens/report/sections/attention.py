"""Finding: modality-specific attention, and how the RTG token changes attention maps.

The seed (L0H0, the exception trajectory): state and action queries attend to S5 (the
first real observation, the start position) but not to RTG tokens, and actions attend
to previous actions; setting RTG from 0.9 to 0 at every position changes the map
dramatically (R7 becomes attended to by the RTG and action tokens after it).

Here: the same window (the seed's exception layout, walked to the decision square, in
the model's padded 9-step context) at the low and the high RTG; L0H0 side by side,
every head of every layer, and per head the attention mass between token types
(R/S/A -> R/S/A) over the real tokens plus how far the RTG moves each head's pattern.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.edits.scenarios import layout_batch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_attention_comparison, plot_attention_heads
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["LAYOUT", "patterns_at_rtg", "run", "type_mass"]

#: The seed's exception layout (instruction key, key up).
LAYOUT = "key/top-key"
SEED_SAW = (
    "In L0H0 (RTG 0.9), state and action queries attend to S5, the first observation, not "
    "to RTG tokens; actions attend to previous actions. Setting the RTG to 0 at every "
    "position changes the map: states still attend to S5, but R7 is now attended to by the "
    "RTG and action tokens after it."
)


@torch.no_grad()
def patterns_at_rtg(
    model: HookedDecisionTransformer, rtg: float
) -> tuple[Float[Tensor, "layer head query key"], list[str], int]:
    """Attention patterns of every layer for the layout's window at one RTG.

    Returns the patterns, the token labels and the index of the first real token.
    """
    batch = layout_batch(LAYOUT, rtg=rtg, model=model).to(model.device)
    _, cache = model.run_with_cache(batch, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    patterns = torch.stack(
        [cache[f"blocks.{layer}.attn.hook_pattern"][0] for layer in range(model.cfg.n_layers)]
    ).cpu()
    route_steps = int((batch.timesteps[0] > 0).sum()) + 1  # real steps: t = 0 .. t_last
    first_real = (batch.n_steps - route_steps) * model.cfg.tokens_per_step
    return patterns, model.token_labels(batch), first_real


def type_mass(
    pattern: Float[Tensor, "query key"], labels: list[str], first_real: int
) -> dict[str, float]:
    """Mean attention mass from each token type to each type, over real tokens only."""
    kinds = [label[0] for label in labels]
    out = {}
    for q_kind in sorted(set(kinds)):
        queries = [i for i in range(first_real, len(kinds)) if kinds[i] == q_kind]
        for k_kind in sorted(set(kinds)):
            keys = [j for j in range(first_real, len(kinds)) if kinds[j] == k_kind]
            mass = pattern[queries][:, keys].sum(-1).mean() if queries and keys else 0.0
            out[f"{q_kind}->{k_kind}"] = round(float(mass), 4)
    return out


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: L0H0 at both RTGs, every head, type-to-type attention mass."""
    low, labels, first_real = patterns_at_rtg(model, config.low_rtg)
    high, _, _ = patterns_at_rtg(model, config.high_rtg)
    titles = (f"RTG {config.low_rtg}", f"RTG {config.high_rtg}")
    figures = [
        plot_attention_comparison(
            low[0, 0], high[0, 0], labels, titles=titles, title=f"L0H0, {LAYOUT}"
        )
    ]
    heads = {}
    for layer in range(model.cfg.n_layers):
        for rtg, patterns in ((config.low_rtg, low), (config.high_rtg, high)):
            figures.append(
                plot_attention_heads(
                    patterns[layer],
                    labels,
                    head_labels=[f"L{layer}H{h}" for h in range(model.cfg.n_heads)],
                    title=f"Layer {layer}, RTG {rtg}",
                )
            )
        for head in range(model.cfg.n_heads):
            change = 0.5 * (low[layer, head] - high[layer, head]).abs().sum(-1)[first_real:]
            heads[f"L{layer}H{head}"] = {
                "mass_low_rtg": type_mass(low[layer, head], labels, first_real),
                "mass_high_rtg": type_mass(high[layer, head], labels, first_real),
                "mean_total_variation_low_vs_high": round(float(change.mean()), 4),
            }
    most_changed = sorted(heads, key=lambda h: -heads[h]["mean_total_variation_low_vs_high"])
    l0h0 = heads["L0H0"]
    first_state = labels[first_real + 1]
    this_model = (
        f"L0H0 at RTG {config.high_rtg}: states put {l0h0['mass_high_rtg']['S->S']:.2f} of their "
        f"attention on states and {l0h0['mass_high_rtg']['S->R']:.2f} on RTG tokens; actions put "
        f"{l0h0['mass_high_rtg']['A->A']:.2f} on actions. The heads whose patterns the RTG "
        f"moves most (mean total variation over queries): "
        + ", ".join(
            f"{h} {heads[h]['mean_total_variation_low_vs_high']:.2f}" for h in most_changed[:3]
        )
        + f". The first real state token of this window is {first_state}."
    )
    return Section(
        key="attention",
        title="Attention maps under two RTGs",
        figures=figures,
        numbers={
            "layout": LAYOUT,
            "labels": labels,
            "first_real_token": first_real,
            "heads": heads,
        },
        seed_saw=SEED_SAW,
        this_model=this_model,
    )
