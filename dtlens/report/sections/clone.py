"""Finding: a behavioural clone side by side with the decision transformer.

The seed's open question ("Studying a behavioural clone and a decision transformer side
by side. Decision Transformers are dissimilar to language models due to the presence of
the RTG token which acts as a strong steering tool in its own right."): does a model
trained on the same demonstrations without the RTG solve the memory task the same way?

The clone is the shipped one (``dtlens.load("memorydt-clone")``, built by ``dtlens
build-memorydt --model-type clone``: the MemoryDT's recipe and demonstrations, S, A
tokens, no RTG) unless ``run(..., clone=...)`` passes one. When the report's model is
itself a clone, it is compared with the shipped MemoryDT instead. When the other model
is missing, the section says so and how to build it, and shows the report's model
alone, labelled as such (``numbers["available"]`` is False).

Measured on both models, each in the window it expects
(:func:`~dtlens.analysis.edits.scenarios.model_instruction_pairs`: its full context,
padded the way it asks, ending at the decision square; the DT's RTG is
``config.high_rtg``, the clone reads none):

- ``success``: greedy success per layout
  (:func:`~dtlens.training.progress.success_by_layout`; the DT at ``config.high_rtg``).
- ``decision_logit_diff``: per layout, the logit of the turn towards the target that
  matches the instruction minus the logit of the other turn, at the decision square
  (positive = the right turn); and ``swap_logit_diff``: how much that difference
  drops when only the instruction is swapped (0 = blind to the instruction).
- attention at the decision token: for every head, the attention of the last state
  token (the decision square) over the window's tokens in ``LAYOUT``, the two models
  side by side (rows = heads, columns = keys; the DT's window has R tokens, the
  clone's does not), and each head's weight on the instruction state ``S_instr``.
- the instruction-swap activation patching (denoising, the patching section's metric
  ``logit(left) - logit(right)`` at the decision token): the residual stream before each
  layer by position, mean over the 4 layouts, per model; the summary gives the
  restored fraction at ``S_instr`` and at ``S_final`` by layer, and each layer's
  most-restoring token (``patching_peak_by_layer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from dtlens.analysis.edits.scenarios import PatchingPair, model_instruction_pairs
from dtlens.analysis.metrics import make_logit_diff_metric
from dtlens.errors import CheckpointError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_patching
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, round_value
from dtlens.report.sections.patching import patch_pairs
from dtlens.report.sections.path_patching import key_tokens

__all__ = [
    "BUILD_COMMAND",
    "LAYOUT",
    "decision_attention_rows",
    "decision_logit_diffs",
    "describe",
    "load_partner",
    "run",
]

#: The seed's exception layout, whose decision-token attention is drawn.
LAYOUT = "key/top-key"
#: How to build the shipped clone.
BUILD_COMMAND = "dtlens build-memorydt --model-type clone"
SEED_SAW = (
    "Left as future work: 'Studying a behavioural clone and a decision transformer side "
    "by side. Decision Transformers are dissimilar to language models due to the presence "
    "of the RTG token which acts as a strong steering tool in its own right. I have "
    "already trained performant behavioural clones and need to adapt my app to handle "
    "and analyse this model.'"
)


def load_partner(model: HookedDecisionTransformer) -> tuple[HookedDecisionTransformer | None, str]:
    """The shipped model to compare ``model`` with, and a sentence if it is missing.

    A decision transformer is compared with the shipped clone, a clone with the
    shipped MemoryDT.
    """
    import dtlens

    name = "memorydt" if model.cfg.model_type == "clone" else "memorydt-clone"
    try:
        return dtlens.load(name, device=model.device), ""
    except CheckpointError:
        how = BUILD_COMMAND if name == "memorydt-clone" else "dtlens build-memorydt"
        return None, (
            f"this installation has no shipped {name!r} model to compare with; build it "
            f"with `{how}` (or pass one: `run(model, config, clone=...)`)."
        )


@torch.no_grad()
def decision_logit_diffs(
    model: HookedDecisionTransformer,
    rtg: float,
    pairs: Sequence[PatchingPair] | None = None,
) -> tuple[list[float], list[float]]:
    """Per layout (``SCENARIOS`` order): the decision-square logit difference (matching
    turn - other turn) of the clean window, and its drop when the instruction is swapped
    (:func:`dtlens.training.progress.swap_logit_diff`).

    ``pairs``: the model's instruction-swap pairs at ``rtg``
    (:func:`~dtlens.analysis.edits.scenarios.model_instruction_pairs`), when built already.

    Example:
        >>> clean, swap = decision_logit_diffs(model, 0.9)  # doctest: +SKIP
    """
    from dtlens.training.progress import swap_logit_diff

    pairs = model_instruction_pairs(model, rtg) if pairs is None else pairs
    clean = TrajectoryBatch.cat([p.clean for p in pairs]).to(model.device)
    logits = model(clean)[:, -1].cpu()
    rows = torch.arange(len(pairs))
    answer = torch.tensor([p.answer_action for p in pairs])
    wrong = torch.tensor([p.wrong_action for p in pairs])
    ld_clean = logits[rows, answer] - logits[rows, wrong]
    swap = swap_logit_diff(model, rtg)
    return [round_value(v) for v in ld_clean], [round_value(v) for v in swap]


@torch.no_grad()
def decision_attention_rows(
    model: HookedDecisionTransformer,
    rtg: float,
    layout: str = LAYOUT,
    pairs: Sequence[PatchingPair] | None = None,
) -> tuple[torch.Tensor, list[str], str]:
    """``[layer * head, key]`` attention of the decision token (the last state) in
    ``layout``'s clean window, the token labels, and the label of ``S_instr`` (the
    first state whose observation the instruction swap changes,
    :func:`~dtlens.report.sections.path_patching.key_tokens`).

    ``pairs``: as for :func:`decision_logit_diffs`.

    Example:
        >>> rows, labels, instr = decision_attention_rows(model, 0.9)  # doctest: +SKIP
        >>> instr  # doctest: +SKIP
        'S5'
    """
    from dtlens.env import SCENARIOS

    pairs = model_instruction_pairs(model, rtg) if pairs is None else pairs
    pair = pairs[[s.name for s in SCENARIOS].index(layout)]
    batch = pair.clean.to(model.device)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch, names_filter=lambda n: n in names)
    last = model.state_positions(batch.n_steps)[-1]
    rows = torch.cat([cache[n][0, :, last, :].cpu() for n in names])  # [layer*head, key]
    instr, _, _ = key_tokens(model, pair.clean, pair.corrupt)
    return rows, model.token_labels(batch), instr


def _measure(model: HookedDecisionTransformer, config: ReportConfig) -> dict[str, Any]:
    """Every number of one model, plus its figures' data."""
    from dtlens.env import SCENARIOS
    from dtlens.training.progress import success_by_layout

    rtg = config.high_rtg
    success = success_by_layout(model, rtg, max_steps=config.max_steps)
    pairs = model_instruction_pairs(model, rtg)
    clean_ld, swap_ld = decision_logit_diffs(model, rtg, pairs)
    rows, labels, instr = decision_attention_rows(model, rtg, pairs=pairs)
    cfg = model.cfg
    heads = [f"L{layer}H{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    metric = make_logit_diff_metric("left", "right", model=model)
    resid = patch_pairs(model, pairs, metric, {"resid_pre": ("layer", "pos")})["resid_pre"]
    final = labels[model.state_positions(pairs[0].clean.n_steps)[-1]]
    i, f = resid.labels["pos"].index(instr), resid.labels["pos"].index(final)
    layouts = [s.name for s in SCENARIOS]
    return {
        "model_type": cfg.model_type,
        "rtg": rtg if cfg.model_type == "decision_transformer" else None,
        "success_by_layout": success,
        "success": round_value(sum(success.values()) / len(success)),
        "decision_logit_diff_by_layout": dict(zip(layouts, clean_ld, strict=True)),
        "decision_logit_diff": round_value(sum(clean_ld) / len(clean_ld)),
        "swap_logit_diff_by_layout": dict(zip(layouts, swap_ld, strict=True)),
        "swap_logit_diff": round_value(sum(swap_ld) / len(swap_ld)),
        "instruction_token": instr,
        "final_token": final,
        "attention_on_instruction": {
            h: round_value(rows[k, labels.index(instr)]) for k, h in enumerate(heads)
        },
        "patching_at_instruction_by_layer": [round_value(v) for v in resid.values[:, i]],
        "patching_at_final_by_layer": [round_value(v) for v in resid.values[:, f]],
        "patching_peak_by_layer": [
            {"token": resid.labels["pos"][int(k)], "restored": round_value(resid.values[layer, k])}
            for layer, k in enumerate(resid.values.argmax(-1))
        ],
        "_rows": rows,
        "_labels": labels,
        "_heads": heads,
        "_resid": resid,
    }


def _attention_figure(panels: list[tuple[str, dict]], note: str = "") -> go.Figure:
    """The decision token's attention, heads x keys, one panel per model side by side."""
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        subplot_titles=[name for name, _ in panels],
        horizontal_spacing=0.1,
    )
    for col, (_, m) in enumerate(panels, start=1):
        fig.add_trace(
            go.Heatmap(
                z=m["_rows"].numpy(),
                x=m["_labels"],
                y=m["_heads"],
                coloraxis="coloraxis",
                hovertemplate="%{y} -> %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        fig.update_xaxes(title_text="key", row=1, col=col)
    fig.update_yaxes(title_text="head", row=1, col=1)
    tokens = " / ".join(m["final_token"] for _, m in panels)
    return fig.update_layout(
        title=f"Attention of the decision token ({tokens}) in {LAYOUT}{note}",
        coloraxis={"colorscale": "Blues", "cmin": 0.0, "cmax": 1.0},
        height=160 + 28 * max(len(m["_heads"]) for _, m in panels),
    )


def _patching_figure(m: dict, name: str, min_gap: float) -> go.Figure:
    return plot_patching(
        m["_resid"],
        title=f"{name}: instruction swap, restored logit difference (residual stream before "
        "each layer, mean over layouts)",
        min_gap=min_gap,
    )


def _public(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.startswith("_")}


def _unavailable(reason: str, model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """The report's model alone, labelled as such: nothing is drawn for the missing one."""
    key = "clone" if model.cfg.model_type == "clone" else "decision_transformer"
    name = _NAMES[key]
    alone = _measure(model, config)
    note = f"<br><sup>{name} only: no comparison model ({_short(reason)})</sup>"
    return Section(
        key="clone",
        title="The behavioural clone side by side",
        figures=[
            _attention_figure([(name, alone)], note),
            _patching_figure(alone, f"{name.capitalize()} only", config.min_gap),
        ],
        numbers={
            "available": False,
            "reason": reason,
            "report_model": model.cfg.model_type,
            key: _public(alone),
        },
        seed_saw=SEED_SAW,
        this_model=(
            f"Not compared: {reason} Shown: the report's model alone ({name}: greedy success "
            f"{alone['success']:.0%}, decision-square logit difference "
            f"{alone['decision_logit_diff']:+.2f})."
        ),
    )


_NAMES = {"decision_transformer": "decision transformer", "clone": "behavioural clone"}


def _short(reason: str) -> str:
    return reason.split(";")[0]


def run(
    model: HookedDecisionTransformer,
    config: ReportConfig,
    clone: HookedDecisionTransformer | None = None,
) -> Section:
    """Compute the section: success, decision logit difference, decision-token attention
    and instruction-swap patching of the DT and the clone.

    Args:
        model: the report's model (a decision transformer or a clone).
        config: the report's settings (``high_rtg`` for the DT, ``max_steps``).
        clone: the other model to compare with; default the shipped one
            (:func:`load_partner`). For a clone ``model`` it must be a DT.
    """
    other, reason = (clone, "") if clone is not None else load_partner(model)
    if other is None:
        return _unavailable(reason, model, config)
    dt_model, clone_model = (other, model) if model.cfg.model_type == "clone" else (model, other)
    if dt_model.cfg.model_type == "clone" or clone_model.cfg.model_type != "clone":
        return _unavailable(
            f"the models are a {model.cfg.model_type} and a {other.cfg.model_type}; the "
            "comparison needs one decision transformer and one clone.",
            model,
            config,
        )
    dt, cl = _measure(dt_model, config), _measure(clone_model, config)
    numbers = {
        "available": True,
        "report_model": model.cfg.model_type,
        "layout": LAYOUT,
        "decision_transformer": _public(dt),
        "clone": _public(cl),
    }
    return Section(
        key="clone",
        title="The behavioural clone side by side",
        figures=[
            _attention_figure([(_NAMES["decision_transformer"], dt), (_NAMES["clone"], cl)]),
            _patching_figure(dt, "Decision transformer", config.min_gap),
            _patching_figure(cl, "Behavioural clone", config.min_gap),
        ],
        numbers=numbers,
        seed_saw=SEED_SAW,
        this_model=describe(numbers),
    )


def describe(numbers: dict) -> str:
    """The section's text from its numbers."""
    if not numbers.get("available"):
        return f"Not compared: {numbers.get('reason', '')}"
    dt, cl = numbers["decision_transformer"], numbers["clone"]

    def solved(m: dict) -> str:
        n = sum(v >= 1.0 for v in m["success_by_layout"].values())
        return f"{n}/{len(m['success_by_layout'])} layouts"

    def top_head(m: dict) -> str:
        head, w = max(m["attention_on_instruction"].items(), key=lambda kv: kv[1])
        return f"{head} {w:.2f}"

    def late_text(m: dict) -> str:
        a, b = m["patching_at_final_by_layer"][-1], m["patching_at_instruction_by_layer"][-1]
        peak = m["patching_peak_by_layer"][-1]
        return (
            f"{b:.2f} at {m['instruction_token']}, {a:.2f} at {m['final_token']}, most at "
            f"{peak['token']} ({peak['restored']:.2f})"
        )

    return (
        f"Greedy success: the DT (RTG {dt['rtg']:g}) solves {solved(dt)}, the clone "
        f"{solved(cl)}. Decision-square logit difference (matching turn - other turn, mean "
        f"over layouts): DT {dt['decision_logit_diff']:+.2f}, clone "
        f"{cl['decision_logit_diff']:+.2f}; swapping the instruction moves it by "
        f"{dt['swap_logit_diff']:.2f} and {cl['swap_logit_diff']:.2f} (0 = blind to the "
        f"instruction). Strongest head on the instruction state at the decision token: DT "
        f"{top_head(dt)}, clone {top_head(cl)}. Instruction-swap patching, residual stream "
        f"before the last layer restores: DT {late_text(dt)}; clone {late_text(cl)} (the "
        "token that carries the instruction into the last layer)."
    )
