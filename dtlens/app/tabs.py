"""Pure functions behind the analysis tabs: attention, logit lens + DLA, activation patching.

Each takes the model and the cached run of the current window
(:class:`~dtlens.app.session.ContextRun`) and returns plotly figures (and a short
summary line), calling ``dtlens.analysis`` for every number and ``dtlens.plotting`` for
every figure. A tab's callback calls its function only while the tab is visible.

Example:
    >>> run = session.context_run(model, "memorydt", rtg=0.9)  # doctest: +SKIP
    >>> single, heads = attention_figures(model, run, layer=0, head=0)  # doctest: +SKIP
    >>> lens_fig, dla_fig = lens_figures(model, run, "left", "right")  # doctest: +SKIP
    >>> by_pos, by_head, summary = patching_results(model, run, "instruction")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Literal

import plotly.graph_objects as go
import torch
from torch import Tensor

from dtlens.analysis.decomposition import direct_logit_attribution, logit_lens
from dtlens.analysis.edits.observations import (
    flip_targets,
    patch_observation,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis.metrics import make_logit_diff_metric
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.attribution import attribution_patching
from dtlens.analysis.patching.results import PatchingResult
from dtlens.app.session import ContextRun
from dtlens.env import ACTION_NAMES
from dtlens.errors import ConfigError, DTLensError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import (
    attention_from_cache,
    plot_attention,
    plot_attention_comparison,
    plot_attention_heads,
    plot_dla,
    plot_logit_lens,
    plot_patching,
)
from dtlens.plotting import patching as patching_plots

__all__ = [
    "EDITS",
    "PATCH_MODES",
    "attention_figures",
    "attention_values",
    "corrupt_batch",
    "display_hooks",
    "lens_figures",
    "patching_figures",
    "patching_results",
]

Edit = Literal["instruction", "targets", "rtg"]
PatchMode = Literal["exact", "attribution"]
#: height (px) of the tabs' figures that do not set their own. Explicit, because a graph
#: that showed a short placeholder (an error) keeps that height for a figure without one.
FIGURE_HEIGHT = 440
#: the edits the patching tab offers: value -> what the page shows.
EDITS: dict[str, str] = {
    "instruction": "swap the instruction (key <-> ball)",
    "targets": "flip the targets (key <-> ball)",
    "rtg": "change the RTG at every position",
}
#: how the patching tab computes its values: value -> what the page shows.
PATCH_MODES: dict[str, str] = {
    "exact": "exact (activation patching: one run per location)",
    "attribution": "fast (attribution patching: first-order estimate, 2 runs + 1 backward)",
}


def display_hooks(model: HookedDecisionTransformer) -> tuple[str, ...]:
    """The hooks every panel and tab of the app reads (not the patching tab, which runs its
    own forwards): the attention patterns, and what ``logit_lens`` and
    ``direct_logit_attribution(by="head")`` need.

    Caching only these makes the one forward per key press about three times cheaper
    than caching every hook.

    Example:
        >>> display_hooks(model)[:3]  # doctest: +SKIP
        ('hook_embed', 'hook_pos_embed', 'ln_final.hook_scale')
    """
    n = model.cfg.n_layers
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale"]
    for layer in range(n):
        names += [
            f"blocks.{layer}.hook_resid_pre",
            f"blocks.{layer}.attn.hook_pattern",
            f"blocks.{layer}.attn.hook_z",
            f"blocks.{layer}.hook_mlp_out",
        ]
    names.append(f"blocks.{n - 1}.hook_resid_post")
    return tuple(names)


def attention_figures(
    model: HookedDecisionTransformer,
    run: ContextRun,
    layer: int,
    head: int,
    run_b: ContextRun | None = None,
    all_heads: bool = False,
) -> tuple[go.Figure, go.Figure | None]:
    """One head's pattern (side by side with ``run_b``'s, if given) and all heads of its layer.

    Args:
        model: the model.
        run: the current window's run.
        layer: the block.
        head: the head.
        run_b: the same window at a second RTG (drawn to the right), or None.
        all_heads: also draw every head of the layer (None instead when False: it is
            the slowest figure of the tab, drawn on request).

    Raises:
        BatchError: ``head`` is out of range.
        HookNameError: ``layer`` is out of range.

    Example:
        >>> pair, heads = attention_figures(model, run, 0, 1, run_b=run_at_0)  # doctest: +SKIP
    """
    labels = model.token_labels(run.batch)
    name = f"L{layer}H{head}"
    if run_b is None:
        single = plot_attention(run.cache, labels, layer=layer, head=head, title=name)
    else:
        single = plot_attention_comparison(
            attention_from_cache(run.cache, layer, head),
            attention_from_cache(run_b.cache, layer, head),
            labels,
            titles=(f"RTG {run.rtg:.2f}", f"RTG {run_b.rtg:.2f}"),
            title=name,
        )
    if not all_heads:
        return _sized(single), None
    patterns = run.cache[f"blocks.{layer}.attn.hook_pattern"][0]
    heads = plot_attention_heads(
        patterns, labels, title=f"layer {layer}, every head (RTG {run.rtg:.2f})"
    )
    return _sized(single), _sized(heads)


def attention_values(
    model: HookedDecisionTransformer,
    run: ContextRun,
    layer: int,
    head: int,
    run_b: ContextRun | None = None,
    all_heads: bool = False,
) -> tuple[list[Tensor], list[Tensor]]:
    """The patterns :func:`attention_figures` draws, one per heatmap trace, in trace order.

    ``([pattern at run's RTG, pattern at run_b's RTG], [every head's pattern])`` (the
    second list empty without ``all_heads``), each ``[query, key]``. The app uses them to
    refresh the figures' values after a key press instead of rebuilding the figures.

    Raises:
        BatchError: ``head`` is out of range.
        HookNameError: ``layer`` is out of range.

    Example:
        >>> pair, heads = attention_values(model, run, 0, 1, run_b=run_at_0)  # doctest: +SKIP
        >>> len(pair), heads  # doctest: +SKIP
        (2, [])
    """
    pair = [attention_from_cache(run.cache, layer, head)]
    if run_b is not None:
        pair.append(attention_from_cache(run_b.cache, layer, head))
    heads = []
    if all_heads:
        heads = list(run.cache[f"blocks.{layer}.attn.hook_pattern"][0])
    return pair, heads


def lens_figures(
    model: HookedDecisionTransformer, run: ContextRun, action_a: int | str, action_b: int | str
) -> tuple[go.Figure, go.Figure]:
    """Logit lens of ``logit(a) - logit(b)`` after each layer, and its DLA by head.

    The lens applies the real final norm to each stage (``logit_lens(scale="own")``);
    the DLA splits the final logit difference into per-head, MLP, embedding and bias
    terms that sum to it (``direct_logit_attribution(by="head")``). Both read the last
    state token, whose logits choose the next action.

    Raises:
        ConfigError: an action is unknown or ``a == b``.

    Example:
        >>> lens_fig, dla_fig = lens_figures(model, run, "left", "right")  # doctest: +SKIP
    """
    a, b = _action_index(action_a), _action_index(action_b)
    if a == b:
        raise ConfigError(f"pick two different actions for the pair (got {ACTION_NAMES[a]} twice).")
    pair = f"{ACTION_NAMES[a]} - {ACTION_NAMES[b]}"
    lens = logit_lens(run.cache, model)
    # display glue: the pair's difference of the lens' per-action logits
    lens_diff = lens.values[:, 0, a] - lens.values[:, 0, b]
    lens_fig = plot_logit_lens(
        lens_diff, list(lens.labels), title=f"Logit lens: {pair}", value_name=f"logit {pair}"
    )
    dla = direct_logit_attribution(run.cache, model, actions=(a, b), by="head")
    dla_fig = plot_dla(
        dla.values[:, 0],
        list(dla.labels),
        title=f"Direct logit attribution of {pair} (sums to {float(dla.total()[0]):.3f})",
        value_name=f"contribution to logit {pair}",
    )
    return _sized(lens_fig), _sized(dla_fig)


def corrupt_batch(run: ContextRun, edit: Edit, rtg: float = 0.0) -> TrajectoryBatch:
    """The run's window with one fact changed: the instruction, the targets or the RTG.

    Raises:
        ConfigError: ``edit`` is not one of :data:`EDITS`.
        ObservationError: the view cannot be located in the Memory layout.

    Example:
        >>> corrupt = corrupt_batch(run, "rtg", rtg=0.0)  # doctest: +SKIP
    """
    if edit == "instruction":
        return patch_observation(run.batch, swap_instruction())
    if edit == "targets":
        return patch_observation(run.batch, flip_targets())
    if edit == "rtg":
        return set_rtg(run.batch, float(rtg))
    raise ConfigError(f"edit must be one of {list(EDITS)}, got {edit!r}.")


def patching_results(
    model: HookedDecisionTransformer,
    run: ContextRun,
    edit: Edit,
    rtg: float = 0.0,
    action_a: int | str = "left",
    action_b: int | str = "right",
    mode: PatchMode = "exact",
) -> tuple[PatchingResult, PatchingResult, str]:
    """Activation patching of the current window against its edit: by layer x position and by head.

    Clean = the current window, corrupt = :func:`corrupt_batch`; the metric is
    ``logit(a) - logit(b)`` at the last state token and each value the restored
    fraction ``(patched - corrupt) / (clean - corrupt)`` of denoising (the corrupt run
    with one clean activation patched in): the residual stream entering each layer at
    each token, and each head's output (``hook_z``) at every position.

    ``mode="attribution"`` estimates the same values to first order
    (:func:`~dtlens.analysis.patching.attribution.attribution_patching`: one forward
    of each run and one backward, whatever the number of locations) instead of
    running every patch (``"exact"``).

    Returns:
        ``(by layer x position, by layer x head, summary)``; the summary gives the
        clean and corrupt logit differences, and says so when they are closer than
        :data:`dtlens.plotting.patching.MIN_GAP` (the maps are then drawn greyed out:
        the fractions divide by almost nothing).

    Raises:
        ConfigError: an action is unknown or ``a == b``, or ``edit`` or ``mode`` is
            unknown.
        DTLensError: the edit changes nothing in the window (e.g. the instruction is
            no longer in view) or leaves the logit difference unchanged.

    Example:
        >>> by_pos, by_head, text = patching_results(model, run, "rtg", rtg=0.0)  # doctest: +SKIP
        >>> by_pos.axes, by_head.axes  # doctest: +SKIP
        (('layer', 'pos'), ('layer', 'head'))
    """
    a, b = _action_index(action_a), _action_index(action_b)
    if a == b:
        raise ConfigError(f"pick two different actions for the pair (got {ACTION_NAMES[a]} twice).")
    if mode not in PATCH_MODES:
        raise ConfigError(f"mode must be one of {list(PATCH_MODES)}, got {mode!r}.")
    clean = run.batch
    corrupt = corrupt_batch(run, edit, rtg)
    same_rtg = clean.rtg is None or torch.equal(clean.rtg, corrupt.rtg)
    if torch.equal(clean.obs, corrupt.obs) and same_rtg:
        raise DTLensError(
            f"the edit '{EDITS[edit]}' changes nothing in the current window (the objects it "
            "edits are not in view in any of its steps); step back into view or pick another edit."
        )
    metric = make_logit_diff_metric(a, b, -1, model=model)
    kwargs = dict(metric=metric, direction="denoise", show_progress=False)
    sweep = attribution_patching if mode == "attribution" else activation_patching
    by_pos = sweep(model, clean, corrupt, hook="resid_pre", by=("layer", "pos"), **kwargs)
    by_head = sweep(model, clean, corrupt, hook="z", by=("layer", "head"), **kwargs)
    clean_diff = float(by_pos.info["clean_metric"][0])
    corrupt_diff = float(by_pos.info["corrupt_metric"][0])
    pair = f"{ACTION_NAMES[a]} - {ACTION_NAMES[b]}"
    summary = (
        f"{EDITS[edit]}{f' to {rtg:.2f}' if edit == 'rtg' else ''}: logit {pair} is "
        f"{clean_diff:.3f} clean, {corrupt_diff:.3f} corrupt; values are the fraction restored "
        "by patching the clean activation into the corrupt run"
        + (
            ", estimated to first order (attribution patching; check surprising values "
            "in exact mode)."
            if mode == "attribution"
            else "."
        )
    )
    gap = abs(clean_diff - corrupt_diff)
    if patching_plots.greyed_out(by_pos):
        summary += (
            f" The two runs differ by only {gap:.3f} logits (under {patching_plots.MIN_GAP:g}): "
            "the maps are greyed out, since these fractions divide by almost nothing."
        )
    return by_pos, by_head, summary


def patching_figures(
    by_pos: PatchingResult, by_head: PatchingResult
) -> tuple[go.Figure, go.Figure]:
    """The two heatmaps of :func:`patching_results` (rows = layers).

    The titles say "estimated" for attribution patching's results. ``plot_patching``
    greys both out (with the gap written inside) when the clean and corrupt logit
    differences are closer than :data:`dtlens.plotting.patching.MIN_GAP`.

    Example:
        >>> by_pos, by_head, _ = patching_results(model, run, "rtg")  # doctest: +SKIP
        >>> pos_fig, head_fig = patching_figures(by_pos, by_head)  # doctest: +SKIP
    """
    estimated = by_pos.info.get("method") == "attribution"
    what = "Restored logit difference" + (" (attribution estimate)" if estimated else "")
    return (
        _sized(plot_patching(by_pos, title=f"{what}: residual stream by layer x position")),
        _sized(plot_patching(by_head, title=f"{what}: head outputs by layer x head")),
    )


def _sized(fig: go.Figure) -> go.Figure:
    """``fig`` with :data:`FIGURE_HEIGHT` unless it sets its own height (display glue)."""
    if fig.layout.height is None:
        fig.update_layout(height=FIGURE_HEIGHT)
    return fig


def _action_index(action: int | str) -> int:
    if isinstance(action, str) and action in ACTION_NAMES:
        return ACTION_NAMES.index(action)
    if isinstance(action, int) and not isinstance(action, bool) and 0 <= action < len(ACTION_NAMES):
        return action
    raise ConfigError(f"unknown action {action!r}; expected one of {list(ACTION_NAMES)} or 0..6.")
