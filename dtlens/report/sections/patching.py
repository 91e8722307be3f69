"""Finding: activation patching of the instruction and of the RTG.

The seed (restored logit difference = (patched - corrupt) / (clean - corrupt) of the
left - right logit difference at the decision token): swapping the instruction key ->
ball in the exception layout at RTG 0 moved the logit difference from -0.066 to -8.275,
and patching the residual stream showed "the information from S5 (the only observation
where you can see the instruction token) is moved immediately to S9 (from which we
will predict our action)". Changing the RTG at every position (clean RTG 0, corrupt
0.9; logit difference -0.066 vs -5.096) showed "some kind of collection", the MLP in
layer 1 restoring 0.87 of the metric and MLP 2 nothing; the seed found RTG patching
"less useful" than patching states.

Here, with the same metric (``logit(left) - logit(right)`` at the last state token,
the decision square; :func:`~dtlens.analysis.metrics.make_logit_diff_metric`) and
denoising (run the corrupt input, patch in one clean activation;
:func:`~dtlens.analysis.patching.activation.activation_patching`, batched):

- the instruction swap (:func:`~dtlens.analysis.edits.scenarios.instruction_swap_pair`) in
  each of the four layouts, at the low RTG (the seed's setting) and at the high RTG
  (the path-patching section's), over the model's full window padded the way the model
  expects (the seed's window: four padding steps, then five real ones, so S_instr = S5,
  the first state token whose observation differs, shows the instruction and
  S_final = S9, the last state token, is the decision square): the residual stream
  before each layer by position (``resid_pre``), each head's output (``z``, layer x
  head) and each MLP's output by position (``mlp_out``). At layer 0 only the
  instruction observation differs, so restoring it there restores everything (1 by
  construction) and every other token nothing; the finding is where the restoration
  sits in later layers. The "hand-off layer" is the first layer whose residual stream
  restores more at S_final than at S_instr; "most between" is the largest restoration
  at any token strictly between them. The text calls it the seed's picture when, in
  the mean over layouts, the hand-off is at layer 1, S_final holds the peak in every
  later layer and no token between restores :data:`ONE_TOKEN` or more.
- the RTG change (:func:`~dtlens.analysis.edits.scenarios.rtg_pair`: clean RTG ``low``,
  corrupt RTG ``high`` at every position, as the seed) on each layout's clean
  trajectory: ``resid_pre`` and ``mlp_out`` by layer x position. The text calls it a
  collection when no single RTG token restores :data:`ONE_TOKEN` at layer 0 while
  S_final's residual stream before the last layer restores more than half.

Values are restored fractions per pair (0 = the patch changes nothing, 1 = fully
clean); summaries average the four layouts. Pairs whose clean and corrupt logit
differences are within ``config.min_gap`` (default :data:`dtlens.plotting.patching.MIN_GAP`)
of each other are listed as weak: their fractions divide by a small number, so their
heatmaps are drawn greyed out with the gap written inside
(:func:`~dtlens.plotting.plot_patching`), and an RTG whose pairs are weak on average is
described as telling nothing (a pair whose runs are equal gets fractions of 0, not an
error). Figures: one heatmap per pair (layouts x RTGs) for each sweep; the leading token
columns that restore exactly nothing in every pair (those before the first token that
differs, and masked padding) are left out and named in the title. Every sweep is
batched over the four layouts; the section takes ~2 s on one CPU thread for a
MemoryDT-sized model.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.edits.scenarios import (
    PatchingPair,
    all_layouts,
    model_instruction_pairs,
    rtg_pair,
)
from dtlens.analysis.metrics import Metric, make_logit_diff_metric, restored_logit_diff
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.results import PatchingResult
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_patching
from dtlens.plotting.patching import PAIR_AXIS
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, round_value
from dtlens.report.sections.patching_text import (
    ONE_TOKEN,
    best_token_is_small,
    describe,
    instruction_blind_caveat,
    seed_pattern,
)

__all__ = [
    "EQUAL_RUNS",
    "INSTRUCTION_SWEEPS",
    "ONE_TOKEN",
    "RTG_SWEEPS",
    "SILENT",
    "best_token_is_small",
    "instruction_blind_caveat",
    "instruction_pairs",
    "patch_pairs",
    "rtg_pairs",
    "run",
    "seed_pattern",
]

#: Instruction-swap sweeps: hook -> axes.
INSTRUCTION_SWEEPS = {
    "resid_pre": ("layer", "pos"),
    "z": ("layer", "head"),
    "mlp_out": ("layer", "pos"),
}
#: RTG-change sweeps: hook -> axes.
RTG_SWEEPS = {"resid_pre": ("layer", "pos"), "mlp_out": ("layer", "pos")}
#: Pairs whose clean and corrupt metrics are this close get restored fractions of 0.
EQUAL_RUNS = 1e-5
#: A patch moving the metric by less than this (logits) restores nothing; leading
#: position columns of such patches in every pair are left out of the figures.
SILENT = 1e-4
_FACET_HEIGHT = 300
#: position columns up to which every label is written under a heatmap
_ALL_TICKS = 14

SEED_SAW = (
    "Instruction swap (key -> ball, exception layout, RTG 0): logit difference -0.066 -> "
    "-8.275; the restored logit difference showed the information from S5 (the only "
    "observation showing the instruction) moved immediately to S9, where the action is "
    "predicted. RTG changed at every position (clean 0, corrupt 0.9; -0.066 vs -5.096): "
    "some kind of 'collection', MLP 1 restoring 0.87 and MLP 2 nothing; patching the RTG "
    "looked less useful than patching states."
)


def instruction_pairs(model: HookedDecisionTransformer, rtg: float) -> list[PatchingPair]:
    """The instruction swap in each layout at ``rtg``, over the model's full window.

    Examples:
        >>> [p.description for p in instruction_pairs(model, 0.9)][:1]  # doctest: +SKIP
        ['key/top-key: instruction key -> ball (RTG 0.9, 9 steps; left vs right)']
    """
    return model_instruction_pairs(model, rtg)


def rtg_pairs(model: HookedDecisionTransformer, config: ReportConfig) -> list[PatchingPair]:
    """Each layout's clean trajectory with RTG ``low`` (clean) vs ``high`` (corrupt) everywhere."""
    return [
        rtg_pair(p, clean=config.low_rtg, corrupt=config.high_rtg)
        for p in instruction_pairs(model, config.high_rtg)
    ]


def patch_pairs(
    model: HookedDecisionTransformer,
    pairs: list[PatchingPair],
    metric: Metric,
    sweeps: dict[str, tuple[str, ...]],
) -> dict[str, PatchingResult]:
    """Denoising sweeps over all ``pairs`` at once (row i of the batches = pair i).

    Values are restored fractions, as ``activation_patching`` normalises them, except
    that a pair whose clean and corrupt metrics are equal (within :data:`EQUAL_RUNS`;
    a model blind to the edit) gets 0 everywhere instead of failing the whole sweep.
    """
    clean = TrajectoryBatch.cat([p.clean for p in pairs]).to(model.device)
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs]).to(model.device)
    return {
        hook: _restored(
            activation_patching(
                model,
                clean,
                corrupt,
                metric,
                hook,
                by=by,
                direction="denoise",
                normalize=False,
                show_progress=False,
            )
        )
        for hook, by in sweeps.items()
    }


def _restored(raw: PatchingResult) -> PatchingResult:
    """A raw sweep as restored fractions per pair; pairs with equal runs get 0."""
    clean, corrupt = raw.info["clean_metric"], raw.info["corrupt_metric"]
    per_pair = raw.info["per_pair"]
    distinct = (clean - corrupt).abs() > EQUAL_RUNS
    fractions = torch.zeros_like(per_pair)
    if bool(distinct.any()):
        fractions[..., distinct] = restored_logit_diff(
            per_pair[..., distinct], clean[distinct], corrupt[distinct], tol=EQUAL_RUNS
        )
    info = {**raw.info, "normalize": True, "per_pair": fractions}
    return PatchingResult(fractions.mean(-1), raw.axes, raw.labels, "restored fraction", info)


def _table(values: Tensor) -> list:
    """A tensor as nested lists of rounded floats."""
    if values.ndim == 0:
        return round_value(values)
    return [_table(v) for v in values]


def _resid_summary(values: Float[Tensor, "layer pos"], labels: list[str], instr: str, final: str):
    """Peaks by layer, restoration at S_instr / S_final by layer, hand-off layer, most between."""
    i, f = labels.index(instr), labels.index(final)
    peaks = values.argmax(-1)
    handoff = [layer for layer in range(values.shape[0]) if values[layer, f] > values[layer, i]]
    between = values[:, i + 1 : f]
    return {
        "peak_by_layer": [labels[int(p)] for p in peaks],
        "peak_value_by_layer": [round_value(values[layer, p]) for layer, p in enumerate(peaks)],
        "at_instruction_by_layer": [round_value(v) for v in values[:, i]],
        "at_final_by_layer": [round_value(v) for v in values[:, f]],
        "handoff_layer": handoff[0] if handoff else None,
        "most_between": round_value(between.max()) if between.numel() else 0.0,
    }


def _top(labels: list[str], values: Tensor, n: int = 3) -> list[str]:
    """The ``n`` largest |values| as ``"label +0.52"`` strings."""
    flat = values.flatten()
    order = flat.abs().argsort(descending=True)[:n]
    return [f"{labels[int(k)]} {float(flat[k]):+.2f}" for k in order]


def _facets(
    results: list[PatchingResult],
    names: list[str],
    title: str,
    n_rows: int,
    min_gap: float,
    ticks: list[str] | None = None,
) -> go.Figure:
    """One heatmap per pair of one sweep over one or more pair sets, on one colour scale.

    Each pair's heatmap is greyed out when its clean - corrupt gap is under ``min_gap``
    (``plot_patching`` judges facets of a ``"pair"`` axis one by one). Leading position
    columns that are exactly 0 in every pair are left out and named in the title.
    ``ticks``: the position labels to write under each heatmap (26 do not fit).
    """
    per_pair = torch.cat([r.info["per_pair"] for r in results], dim=-1)
    clean = torch.cat([r.info["clean_metric"] for r in results])
    corrupt = torch.cat([r.info["corrupt_metric"] for r in results])
    labels = dict(results[0].labels)
    if results[0].axes[-1] == "pos":
        moved = per_pair * (clean - corrupt)  # patched - corrupt, in logits
        per_pair, labels["pos"], title = _trim_silent(per_pair, moved, labels["pos"], title)
    stacked = PatchingResult(
        per_pair.permute(-1, *range(per_pair.ndim - 1)),
        axes=(PAIR_AXIS, *results[0].axes),
        labels={PAIR_AXIS: names, **labels},
        metric_name="restored fraction",
        info={"clean_metric": clean, "corrupt_metric": corrupt},
    )
    figure = plot_patching(stacked, title=title, min_gap=min_gap)
    for note in figure.layout.annotations:
        note.text = note.text.removeprefix(f"{PAIR_AXIS} ")
    if ticks is not None and len(labels["pos"]) > _ALL_TICKS:
        shown = [t for t in ticks if t in labels["pos"]]
        figure.update_xaxes(tickmode="array", tickvals=shown, ticktext=shown)
    return figure.update_layout(height=120 + _FACET_HEIGHT * n_rows)


def _trim_silent(
    per_pair: Float[Tensor, "layer pos pair"],
    moved: Float[Tensor, "layer pos pair"],
    labels: list[str],
    title: str,
) -> tuple[Tensor, list[str], str]:
    """Drop the leading positions whose patches move the metric by less than
    :data:`SILENT` logits in every layer and pair (tokens before the first one that
    differs, masked padding); say so in the title."""
    silent = (moved.abs() < SILENT).all(-1).all(0)  # [pos]
    first = int(silent.long().cumprod(0).sum())
    if first == 0 or first == len(labels):
        return per_pair, labels, title
    span = labels[0] if first == 1 else f"{labels[0]}–{labels[first - 1]}"
    note = f"<br><sup>{span} restore nothing in any pair and are not shown</sup>"
    return per_pair[:, first:], labels[first:], title + note


class _Sweeps:
    """The section's pairs, metric, token labels and sweep results."""

    def __init__(self, model: HookedDecisionTransformer, config: ReportConfig) -> None:
        self.model = model
        self.min_gap = config.min_gap
        self.metric = make_logit_diff_metric("left", "right", model=model)
        self.rtgs = [config.high_rtg, config.low_rtg]
        self.layouts = [s.name for s in all_layouts()]
        self.swap = {rtg: instruction_pairs(model, rtg) for rtg in self.rtgs}
        self.rtg = rtg_pairs(model, config)
        self.change = f"RTG {config.low_rtg:g} (clean) vs {config.high_rtg:g}"
        first = self.swap[config.high_rtg][0]
        self.labels = model.token_labels(first.clean)
        differs = torch.stack(
            [(p.clean.obs != p.corrupt.obs).flatten(2).any(-1)[0] for p in self.swap[self.rtgs[0]]]
        ).any(0)
        states = model.state_positions(first.clean.n_steps)
        self.instr = self.labels[states[int(differs.nonzero()[0])]]
        self.final = self.labels[states[-1]]
        self.swap_results = {
            rtg: patch_pairs(model, pairs, self.metric, INSTRUCTION_SWEEPS)
            for rtg, pairs in self.swap.items()
        }
        self.rtg_results = patch_pairs(model, self.rtg, self.metric, RTG_SWEEPS)


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: instruction-swap and RTG-change patching, figures and tables."""
    s = _Sweeps(model, config)
    swap_rows, swap_tables, swap_means = [], {}, {}
    for rtg in s.rtgs:
        rows, tables = _pair_rows(s, s.swap_results[rtg], {"rtg": rtg}, f" @ RTG {rtg:g}")
        swap_rows += rows
        swap_tables.update(tables)
        swap_means[f"RTG {rtg:g}"] = _mean_summary(s, s.swap_results[rtg])
    rtg_rows, rtg_tables = _pair_rows(s, s.rtg_results, {}, "")
    rtg_mean = _mean_summary(s, s.rtg_results)
    rtg_mean["layer0_rtg_tokens"] = {
        label: round_value(s.rtg_results["resid_pre"].values[0, k])
        for k, label in enumerate(s.labels)
        if label.startswith("R")
    }
    weak = [f"{r['layout']} @ RTG {r['rtg']:g}" for r in swap_rows if _weak(r, s.min_gap)] + [
        f"{r['layout']} RTG change" for r in rtg_rows if _weak(r, s.min_gap)
    ]
    numbers = {
        "min_gap": s.min_gap,
        "metric": f"logit(left) - logit(right) at {s.final}",
        "direction": "denoise",
        "instruction_token": s.instr,
        "final_token": s.final,
        "labels": s.labels,
        "layouts": s.layouts,
        "rtgs": s.rtgs,
        "instruction_swap_pairs": swap_rows,
        "instruction_swap_mean": swap_means,
        "instruction_swap_tables": swap_tables,
        "instruction_swap_gap": {
            f"RTG {rtg:g}": _mean_gap([r for r in swap_rows if r["rtg"] == rtg]) for rtg in s.rtgs
        },
        "rtg_change": {"clean_rtg": config.low_rtg, "corrupt_rtg": config.high_rtg},
        "rtg_change_pairs": rtg_rows,
        "rtg_change_mean": rtg_mean,
        "rtg_change_tables": rtg_tables,
        "rtg_change_gap": _mean_gap(rtg_rows),
        "weak_pairs": weak,
    }
    return Section(
        key="patching",
        title="Activation patching: the instruction swap and the RTG change",
        figures=_figures(s),
        numbers=numbers,
        seed_saw=SEED_SAW,
        this_model=describe(numbers),
    )


def _pair_rows(
    s: _Sweeps, results: dict[str, PatchingResult], fields: dict, suffix: str
) -> tuple[list[dict], dict[str, dict]]:
    """One record per layout (baselines, residual peaks, top head / MLP) and its tables."""
    cfg = s.model.cfg
    heads = [f"L{layer}H{head}" for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    mlps = [f"MLP{layer}@{p}" for layer in range(cfg.n_layers) for p in s.labels]
    info = results["resid_pre"].info
    rows, tables = [], {}
    for i, layout in enumerate(s.layouts):
        values = {hook: r.info["per_pair"][..., i] for hook, r in results.items()}
        tables[layout + suffix] = {hook: _table(v) for hook, v in values.items()}
        summary = _resid_summary(values["resid_pre"], s.labels, s.instr, s.final)
        row = {
            "layout": layout,
            **fields,
            "clean_logit_diff": round_value(info["clean_metric"][i]),
            "corrupt_logit_diff": round_value(info["corrupt_metric"][i]),
            **{k: summary[k] for k in ("peak_by_layer", "peak_value_by_layer", "handoff_layer")},
        }
        if "z" in values:
            row["top_heads"] = _top(heads, values["z"], 2)
        row["top_mlp"] = _top(mlps, values["mlp_out"], 1)[0]
        rows.append(row)
    return rows, tables


def _mean_summary(s: _Sweeps, results: dict[str, PatchingResult]) -> dict:
    """Residual summary, top heads and the MLPs at S_final, of the mean over layouts."""
    cfg = s.model.cfg
    out = _resid_summary(results["resid_pre"].values, s.labels, s.instr, s.final)
    if "z" in results:
        heads = [f"L{layer}H{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
        out["top_heads"] = _top(heads, results["z"].values)
    final = s.labels.index(s.final)
    out["mlp_at_final_by_layer"] = [round_value(v) for v in results["mlp_out"].values[:, final]]
    return out


def _gap(row: dict) -> float:
    return abs(row["clean_logit_diff"] - row["corrupt_logit_diff"])


def _weak(row: dict, min_gap: float) -> bool:
    return _gap(row) < min_gap


def _mean_gap(rows: list[dict]) -> float:
    """Mean |clean - corrupt| logit difference of the pairs (what greys a figure out)."""
    return round_value(sum(_gap(r) for r in rows) / len(rows)) if rows else 0.0


def _figures(s: _Sweeps) -> list[go.Figure]:
    """Facet heatmaps: instruction swap (layouts x RTGs) by hook, then the RTG change."""
    states = [label for label in s.labels if label.startswith("S")]
    rtgs = [label for label in s.labels if label.startswith("R")]  # R9 would hide S9
    names = [f"{layout} @ RTG {rtg:g}" for rtg in s.rtgs for layout in s.layouts]
    swap_title = f"Instruction swap ({s.instr} key <-> ball): restored logit difference, "
    change = f"RTG change ({s.change} at every position): restored logit difference, "
    figures = [
        _facets(
            [s.swap_results[rtg][hook] for rtg in s.rtgs],
            names,
            swap_title + what,
            n_rows=len(s.rtgs),
            min_gap=s.min_gap,
            ticks=ticks,
        )
        for hook, what, ticks in (
            ("resid_pre", "residual stream before each layer by position", states),
            ("z", "each head's output (z) by layer x head", None),
            ("mlp_out", "each MLP's output by position", states),
        )
    ]
    figures += [
        _facets(
            [s.rtg_results[hook]],
            s.layouts,
            change + what,
            n_rows=1,
            min_gap=s.min_gap,
            ticks=[*rtgs[:-1], s.final],
        )
        for hook, what in (
            ("resid_pre", "residual stream by layer x position"),
            ("mlp_out", "each MLP's output by layer x position"),
        )
    ]
    return figures
