"""Attention-pattern heatmaps: one head, two runs side by side, all heads of a layer.

Rows are queries (first token on top), columns keys, both labelled with the token
labels (``model.token_labels(batch)``: ``R1, S1, A1, ...``). Attention is causal, so
cells above the diagonal (a query attending to a later key) are set to NaN and drawn
empty. Figures with several patterns share one colour scale, so equal colours mean
equal weights (by default 0 to 1).

Examples:
    >>> import torch
    >>> pattern = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    >>> fig = plot_attention(pattern, ["R1", "S1"], title="L0H0")
    >>> fig.data[0].z.tolist()
    [[1.0, nan], [0.25, 0.75]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor
from transformer_lens import ActivationCache

from dtlens.errors import BatchError, HeadIndexError, HookNameError
from dtlens.model.validation import is_head_index, negative_head_hint
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels, labelled_heatmap

__all__ = [
    "attention_from_cache",
    "plot_attention",
    "plot_attention_comparison",
    "plot_attention_heads",
]

Pattern = Float[Tensor, "query key"] | Float[np.ndarray, "query key"]

_HOVER = "query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>"


def attention_from_cache(
    cache: ActivationCache, layer: int, head: int, batch_index: int = 0
) -> Float[Tensor, "query key"]:
    """One head's attention pattern from a cache: ``blocks.{layer}.attn.hook_pattern[b, head]``.

    Args:
        cache: from ``model.run_with_cache(batch)`` (it must hold the pattern hook).
        layer: the block index.
        head: the head index within the layer.
        batch_index: which row of the batch.

    Returns:
        The ``[query, key]`` pattern (a view into the cache).

    Raises:
        HookNameError: the cache has no pattern for ``layer``.
        HeadIndexError: ``head`` is not in ``0..n_heads - 1`` (negative heads are
            refused: ``-1`` would silently pick the last head); also a BatchError.
        BatchError: ``batch_index`` is out of range (the message gives the cached
            shape).

    Examples:
        >>> _, cache = model.run_with_cache(batch)  # doctest: +SKIP
        >>> attention_from_cache(cache, layer=0, head=0).shape  # doctest: +SKIP
        torch.Size([26, 26])
    """
    name = f"blocks.{layer}.attn.hook_pattern"
    if name not in cache:
        cached = sorted(k for k in cache if k.endswith("attn.hook_pattern"))
        raise HookNameError(f"the cache has no {name!r}; attention patterns cached: {cached}.")
    patterns = cache[name]  # [batch, head, query, key]
    n_batch, n_heads = patterns.shape[0], patterns.shape[1]
    if not is_head_index(head, n_heads):
        raise HeadIndexError(
            f"head {head!r} is out of range: {name} has shape {list(patterns.shape)} "
            f"[batch, head, query, key], so heads 0..{n_heads - 1}"
            f"{negative_head_hint(head, n_heads)}."
        )
    if not -n_batch <= batch_index < n_batch:
        raise BatchError(
            f"batch_index {batch_index} is out of range: {name} has shape "
            f"{list(patterns.shape)} [batch, head, query, key], so {n_batch} rows."
        )
    return patterns[batch_index, head]


def plot_attention(
    pattern: Pattern | ActivationCache,
    labels: Sequence[str] | None = None,
    *,
    layer: int | None = None,
    head: int | None = None,
    batch_index: int = 0,
    title: str | None = None,
    zmax: float | None = 1.0,
) -> go.Figure:
    """Heatmap of one attention pattern, queries on rows, keys on columns, future masked.

    Pass the pattern itself, or a cache with ``layer=`` and ``head=`` (then the pattern
    is :func:`attention_from_cache` ``(cache, layer, head, batch_index)``).

    Args:
        pattern: a square ``[query, key]`` pattern, or an ``ActivationCache``.
        labels: one token label per position (``model.token_labels(batch)``);
            default ``"0"``, ``"1"``, ...
        layer: with a cache: the block index.
        head: with a cache: the head index.
        batch_index: with a cache: the batch row.
        title: figure title (default ``"L{layer}H{head}"`` with a cache, else none).
        zmax: top of the colour scale (bottom 0); ``None`` = the largest weight shown.

    Returns:
        A figure whose heatmap z is the pattern with NaN above the diagonal.

    Raises:
        BatchError: the pattern is not square, labels do not match its size, or
            ``layer``/``head`` were given (or missing) for the wrong kind of input.

    Examples:
        >>> labels = model.token_labels(batch)  # doctest: +SKIP
        >>> fig = plot_attention(cache, labels, layer=0, head=0)  # doctest: +SKIP
        >>> import torch
        >>> fig = plot_attention(torch.eye(3), ["R1", "S1", "A1"])
        >>> list(fig.data[0].x)
        ['R1', 'S1', 'A1']
    """
    if isinstance(pattern, ActivationCache):
        if layer is None or head is None:
            raise BatchError("plot_attention(cache, ...) needs layer= and head=.")
        pattern = attention_from_cache(pattern, layer, head, batch_index)
        title = title if title is not None else f"L{layer}H{head}"
    elif layer is not None or head is not None:
        raise BatchError(
            f"layer={layer}, head={head} select a pattern from a cache; "
            f"got a {type(pattern).__name__}, which is the pattern itself."
        )
    z = _masked(pattern, "attention pattern [query, key]")
    axis = check_labels(labels, z.shape[0], "token labels")
    fig = go.Figure(labelled_heatmap(z, axis, axis, _HOVER, coloraxis="coloraxis"))
    fig.update_yaxes(autorange="reversed", title_text="query")
    fig.update_xaxes(title_text="key")
    return _finish(fig, [z], zmax, title)


def plot_attention_comparison(
    pattern_a: Pattern,
    pattern_b: Pattern,
    labels: Sequence[str] | None = None,
    titles: tuple[str, str] = ("RTG 0.0", "RTG 0.9"),
    title: str | None = None,
    zmax: float | None = 1.0,
) -> go.Figure:
    """Two attention patterns side by side on one colour scale (e.g. RTG 0.0 vs 0.9).

    Args:
        pattern_a: the left ``[query, key]`` pattern.
        pattern_b: the right pattern, same shape.
        labels: one token label per position.
        titles: the two panel titles.
        title: figure title.
        zmax: top of the shared colour scale (bottom 0); ``None`` = the largest
            weight in either pattern.

    Returns:
        A 1 x 2 subplot figure; both heatmaps use ``layout.coloraxis``.

    Raises:
        BatchError: the patterns differ in shape or are not square, or labels do not
            match.

    Examples:
        >>> import torch
        >>> fig = plot_attention_comparison(torch.eye(2), torch.ones(2, 2) / 2, ["R1", "S1"])
        >>> fig.data[0].coloraxis == fig.data[1].coloraxis == "coloraxis"
        True
    """
    za = _masked(pattern_a, "pattern_a [query, key]")
    zb = _masked(pattern_b, "pattern_b [query, key]")
    if za.shape != zb.shape:
        raise BatchError(
            f"patterns to compare must have one shape, got {list(za.shape)} and {list(zb.shape)}."
        )
    if len(titles) != 2:
        raise BatchError(f"titles must be 2 panel titles, got {len(titles)}: {list(titles)}.")
    axis = check_labels(labels, za.shape[0], "token labels")
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles), horizontal_spacing=0.08)
    for col, z in enumerate((za, zb), start=1):
        trace = labelled_heatmap(z, axis, axis, _HOVER, coloraxis="coloraxis")
        fig.add_trace(trace, row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        fig.update_xaxes(title_text="key", row=1, col=col)
    fig.update_yaxes(title_text="query", row=1, col=1)
    return _finish(fig, [za, zb], zmax, title)


def plot_attention_heads(
    patterns: Float[Tensor, "head query key"] | Float[np.ndarray, "head query key"],
    labels: Sequence[str] | None = None,
    head_labels: Sequence[str] | None = None,
    n_cols: int = 4,
    title: str | None = None,
    zmax: float | None = 1.0,
) -> go.Figure:
    """A grid with the attention pattern of every head of a layer, on one colour scale.

    Args:
        patterns: ``[head, query, key]``, e.g. ``cache["blocks.0.attn.hook_pattern"][0]``.
        labels: one token label per position.
        head_labels: one panel title per head (default ``"H0"``, ``"H1"``, ...).
        n_cols: panels per row.
        title: figure title (e.g. ``"layer 0"``).
        zmax: top of the shared colour scale (bottom 0); ``None`` = the largest weight.

    Returns:
        A subplot figure with one heatmap per head, all on ``layout.coloraxis``.

    Raises:
        BatchError: ``patterns`` is not ``[head, n, n]``, labels do not match, or
            ``n_cols < 1``.

    Examples:
        >>> import torch
        >>> fig = plot_attention_heads(torch.eye(3).repeat(2, 1, 1), ["R1", "S1", "A1"])
        >>> len(fig.data), fig.layout.annotations[1].text
        (2, 'H1')
    """
    stack = as_numpy(patterns, "patterns [head, query, key]", 3)
    if n_cols < 1:
        raise BatchError(f"n_cols must be at least 1, got {n_cols}.")
    n_heads = stack.shape[0]
    zs = [_masked(stack[h], f"patterns[{h}] [query, key]") for h in range(n_heads)]
    axis = check_labels(labels, stack.shape[1], "token labels")
    names = check_labels(
        head_labels if head_labels is not None else [f"H{h}" for h in range(n_heads)],
        n_heads,
        "head labels",
    )
    cols = min(n_cols, n_heads)
    rows = math.ceil(n_heads / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=names,
        horizontal_spacing=0.04,
        vertical_spacing=0.08,
    )
    for h, z in enumerate(zs):
        row, col = h // cols + 1, h % cols + 1
        trace = labelled_heatmap(z, axis, axis, _HOVER, coloraxis="coloraxis", name=names[h])
        fig.add_trace(trace, row=row, col=col)
        fig.update_yaxes(autorange="reversed", row=row, col=col)
    fig.update_layout(height=260 * rows + 140, width=260 * cols + 160)  # square panels
    return _finish(fig, zs, zmax, title)


def _masked(pattern: Pattern, name: str) -> np.ndarray:
    """The pattern as float64 with NaN above the diagonal (keys after the query)."""
    z = as_numpy(pattern, name, 2)
    if z.shape[0] != z.shape[1]:
        raise BatchError(f"{name} must be square (causal attention), got shape {list(z.shape)}.")
    z[np.triu_indices(z.shape[0], k=1)] = np.nan
    return z


def _finish(
    fig: go.Figure, zs: list[np.ndarray], zmax: float | None, title: str | None
) -> go.Figure:
    top = zmax if zmax is not None else max(float(np.nanmax(z)) for z in zs)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig.update_layout(
        title=title,
        template=style.TEMPLATE,
        coloraxis=style.sequential_coloraxis("attention", top),
    )
