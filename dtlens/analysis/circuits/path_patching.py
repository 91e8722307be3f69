"""Path patching: how much of a clean/corrupt difference flows along sender -> receiver edges.

Activation patching asks "does this component matter?"; path patching asks "does what
these *senders* write into the residual stream matter *as read by* these
*receivers*?" (Wang et al. 2022, IOI; Goldowsky-Dill et al. 2023). Senders are heads,
MLPs and embeddings; receivers are heads' q/k/v inputs, MLP inputs or the logits (the
node types and shorthands are in :mod:`dtlens.analysis.circuits.nodes`).

Roles. ``direction="denoise"`` (default) runs the *corrupt* input (the *base* run) and
moves the senders' *clean* writes (the *source* run) into the receivers; ``"noise"``
runs the clean input with the senders' corrupt writes. A sender's write is always its
output in the source run minus its output in the base run, each computed from that
run's own inputs: the direct contribution, without effects through other nodes.

Modes:

- ``"direct"`` (exact edge patching): each receiver reads the base residual stream plus
  the writes of the senders that reach it; nothing else changes. A receiver head's
  q/k/v is recomputed as ``norm1(resid_pre_base + writes) @ W_Q[l, h] + b_Q[l, h]``
  (the norm's scale recomputed on the edited input; LN, LNPre or none), an MLP reads
  ``resid_mid_base + writes`` through its own norm, and the logits are
  ``unembed(ln_final(final_base + writes))``. The rest of the forward then runs on the
  base input, so components downstream of a receiver see its changed output (the path
  through the receiver).
- ``"freeze"`` (the three steps of the IOI paper and ARENA): (1) run clean and corrupt,
  caching; (2) run the base input with every head's ``z`` frozen to its base value
  (every MLP too with ``freeze_mlps=True``) except the senders, which take the source
  value, and record the receivers' inputs (q/k/v, MLP input, final residual); (3) run
  the base input with the receivers' inputs set to the recorded ones. Unfrozen MLPs
  carry senders' effects on to the receivers, so with ``freeze_mlps=False`` the two
  modes differ; with ``freeze_mlps=True`` they agree.

In both modes a receiver's input is *replaced*, so with several receivers one
receiver's changed output does not reach another receiver's input, and a
:class:`~dtlens.analysis.circuits.nodes.Logits` receiver replaces the final residual,
hiding every other receiver's effect. A sender that reaches no receiver (a head at or
after a receiver head's layer) changes nothing: its value is the base run's metric.

Values. ``metric(logits [B, pos, action]) -> [B]`` is computed per pair. With
``normalize=True`` (as :func:`dtlens.analysis.patching.activation.activation_patching`) each
pair's value is the **restored fraction** ``(patched - corrupt) / (clean - corrupt)``
(:func:`~dtlens.analysis.metrics.restored_logit_diff`), then averaged over the pairs.
It is the same formula in both directions: denoising starts at 0 (senders that
change nothing) and reaches 1 where the path alone restores the clean behaviour;
noising starts at 1 and falls towards 0 where the path alone breaks it. With
``normalize=False`` the value is the mean patched metric.

Examples:
    >>> value = path_patching(model, clean, corrupt, ["L0H1", "MLP0"], "L1H2.q", metric)
    >>> sweep = path_patching_sweep(model, clean, corrupt, "logits", metric)
    >>> one = path_patching(model, clean, corrupt, "L0H3", "logits", metric)  # L0H3's direct path
    >>> abs(sweep.value(layer="0", head="3") - float(one)) < 1e-5  # the sweep's entry for it
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.analysis.circuits.graph import model_senders
from dtlens.analysis.circuits.node_io import receiver_inputs
from dtlens.analysis.circuits.nodes import (
    MLP,
    Embed,
    Head,
    Logits,
    MLPInput,
    Position,
    Receiver,
    ResidPre,
    Sender,
    parse_receivers,
    parse_senders,
    reaches,
)
from dtlens.analysis.circuits.path_steps import freeze_values, run_receivers
from dtlens.analysis.circuits.runs import PathRuns, metric_per_pair
from dtlens.analysis.metrics import MetricFn, metric_name, restored_fraction
from dtlens.analysis.patching.results import PatchingResult
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["DEFAULT_MAX_BATCH", "path_patching", "path_patching_sweep"]

#: Rows (sender heads x pairs) per batched forward of a sweep unless the caller says otherwise.
DEFAULT_MAX_BATCH = 1024

Mode = Literal["direct", "freeze"]
SenderKinds = Literal["heads", "mlps", "embeddings", "all"]
Direction = Literal["denoise", "noise"]
Resid = Float[Tensor, "row pos d_model"]


def path_patching(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    senders: Sender | str | Sequence[Sender | str],
    receivers: Receiver | str | Sequence[Receiver | str],
    metric: MetricFn,
    mode: Mode = "direct",
    direction: Direction = "denoise",
    freeze_mlps: bool = False,
    normalize: bool = True,
) -> Float[Tensor, ""]:
    """The metric when the senders' writes reach only the receivers (see the module doc).

    Args:
        model: the decision transformer.
        clean: B clean windows.
        corrupt: B corrupt windows, the same shapes and padding as ``clean``.
        senders: heads / MLPs / embeddings (nodes or shorthands such as ``"L0H3"``,
            ``"MLP0@S9"``, ``"state_embed"``), patched together.
        receivers: ``"L1H2.q"``-style head inputs, MLP inputs, ``"logits"``, or one
            ``"resid_pre1"`` (the whole stream entering block 1; given alone).
        metric: ``logits [B, pos, action] -> [B]`` (averaged over the pairs) or a scalar
            (:data:`~dtlens.analysis.metrics.MetricFn`).
        mode: ``"direct"`` (exact edge patching) or ``"freeze"`` (IOI's three steps).
        direction: ``"denoise"`` (corrupt run, clean writes) or ``"noise"`` (the reverse).
        freeze_mlps: in ``"freeze"`` mode, also freeze every MLP but the senders.
        normalize: return the restored fraction (mean over pairs) instead of the mean
            patched metric.

    Returns:
        A 0-d tensor.

    Raises:
        ConfigError: bad mode, direction, node, position or metric output, or senders
            none of which can reach a receiver (a sweep reports those as 0 instead).
        BatchError: clean and corrupt differ in shape or padding.
        DTLensError: ``normalize=True`` and a pair's clean and corrupt metrics agree.

    Example:
        >>> from dtlens.analysis.metrics import make_logit_diff_metric
        >>> metric = make_logit_diff_metric("left", "right")
        >>> path_patching(model, clean, corrupt, "L0H1", "logits", metric).shape  # a mean
        torch.Size([])
    """
    nodes = parse_senders(senders)
    targets = _checked_receivers(receivers)
    if not any(reaches(s, r) for s in nodes for r in targets):
        raise ConfigError(
            f"no sender of {[str(s) for s in nodes]} can reach a receiver of "
            f"{[str(r) for r in targets]}: each writes to the residual stream after the "
            "receivers read it (a head reaches later layers and the MLPs of its own and later "
            "layers), so the path carries nothing. Pick a receiver after the senders."
        )
    runs = PathRuns(model, clean, corrupt, metric, direction, mode, normalize, nodes + targets)
    per_pair = _group_values(runs, [nodes], targets, metric, mode, freeze_mlps)
    return _finish(runs, per_pair, normalize)[0].mean()


def path_patching_sweep(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    receivers: Receiver | str | Sequence[Receiver | str],
    metric: MetricFn,
    mode: Mode = "direct",
    direction: Direction = "denoise",
    freeze_mlps: bool = False,
    normalize: bool = True,
    sender_pos: Sequence[Position] | None = None,
    *,
    senders: SenderKinds = "heads",
    max_batch: int = DEFAULT_MAX_BATCH,
    show_progress: bool = True,
) -> PatchingResult:
    """:func:`path_patching` with every head (or MLP, or embedding), one at a time, as the sender.

    Each (sender head, pair) is one row of a batched forward; rows are chunked to at
    most ``max_batch`` (whole senders: at least the B pairs of one). Patched runs start at the
    first receiver's layer from the cached base residual (``forward_from_layer``), a
    :class:`~dtlens.analysis.circuits.nodes.Logits` receiver in ``"direct"`` mode needs no
    block at all, and heads that reach no receiver are not run (their value is the
    base metric, effect 0). With no hook attached to the model, ``"freeze"`` step 2
    runs no attention (every head's ``z`` is fixed) and head-input receivers are
    patched in plain re-runs (:func:`dtlens.model.suffix.forward_suffix`); with a hook
    attached, both run through the hooked model, so the hook applies.

    ``model``, ``clean``, ``corrupt``, ``receivers``, ``metric``, ``mode``, ``direction``,
    ``freeze_mlps`` and ``normalize`` are as for :func:`path_patching`.

    Args:
        sender_pos: restrict every sender to these positions (ints or labels).
        senders: which senders to sweep: ``"heads"`` (default), ``"mlps"``,
            ``"embeddings"`` (the four DT embeddings) or ``"all"`` (every sender).
        max_batch: rows per batched forward (the memory budget).
        show_progress: show a tqdm bar when there is more than one chunk.

    Returns:
        For ``senders="heads"``: a ``PatchingResult`` with ``values [n_layers, n_heads]``,
        axes ``("layer", "head")``, labels ``"0".."n-1"``. Otherwise one axis,
        ``("sender",)``, labelled by the senders' shorthands (``"MLP0"``,
        ``"state_embed"``, ``"L1H2"``). ``info`` holds ``mode``, ``direction``,
        ``freeze_mlps``, ``normalize``, ``receivers``, ``sender_pos``, ``clean_metric``
        and ``corrupt_metric`` (``[B]``; ``[1]`` for a scalar metric) and ``per_pair``
        (``[*axes, B]``; None for a scalar metric).

    Example:
        >>> result = path_patching_sweep(model, clean, corrupt, ["L1H0.q", "L1H1.q"], metric)
        >>> result.value(layer="1", head="2"), result.values.shape  # layer 1 cannot reach them
        (0.0, torch.Size([2, 4]))
        >>> path_patching_sweep(model, clean, corrupt, "resid_pre1", metric, senders="all").axes
        ('sender',)
    """
    cfg = model.cfg
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be a positive int, got {max_batch!r}.")
    pos = None if sender_pos is None else tuple(sender_pos)
    nodes = _sweep_senders(model, senders, pos)
    targets = _checked_receivers(receivers)
    runs = PathRuns(model, clean, corrupt, metric, direction, mode, normalize, (*nodes, *targets))
    groups = [(s,) for s in nodes]
    size = max(1, max_batch // runs.n_pairs)
    chunks = [groups[i : i + size] for i in range(0, len(groups), size)]
    bar = tqdm(chunks, desc="path patching", disable=not show_progress or len(chunks) <= 1)
    per_pair = torch.cat([_group_values(runs, c, targets, metric, mode, freeze_mlps) for c in bar])
    per_pair = _finish(runs, per_pair, normalize)
    if senders == "heads":
        per_pair = per_pair.reshape(cfg.n_layers, cfg.n_heads, -1)
        axes = ("layer", "head")
        labels = {
            "layer": [str(i) for i in range(cfg.n_layers)],
            "head": [str(i) for i in range(cfg.n_heads)],
        }
    else:
        axes, labels = ("sender",), {"sender": [str(_whole(s)) for s in nodes]}
    return PatchingResult(
        values=per_pair.mean(-1),
        axes=axes,
        labels=labels,
        metric_name=metric_name(metric, normalize),
        info={
            "mode": mode,
            "direction": direction,
            "freeze_mlps": freeze_mlps,
            "normalize": normalize,
            "receivers": [str(r) for r in targets],
            "sender_pos": pos,
            "clean_metric": runs.clean_metric,
            "corrupt_metric": runs.corrupt_metric,
            "per_pair": per_pair if len(runs.clean_metric) == runs.n_pairs else None,
        },
    )


def _sweep_senders(
    model: HookedDecisionTransformer, kinds: str, pos: tuple[Position, ...] | None
) -> list[Sender]:
    """The senders a sweep visits: the graph's (:func:`model_senders`) of the kinds, at ``pos``."""
    if kinds not in ("heads", "mlps", "embeddings", "all"):
        raise ConfigError(f"senders must be 'heads', 'mlps', 'embeddings' or 'all', got {kinds!r}.")
    wanted = {"heads": Head, "mlps": MLP, "embeddings": Embed, "all": (Embed, Head, MLP)}[kinds]
    return [replace(s, pos=pos) for s in model_senders(model.cfg) if isinstance(s, wanted)]


def _whole(sender: Sender) -> Sender:
    """The sender without its positions (for labels: every sweep entry has the same ones)."""
    return type(sender)(*[getattr(sender, f) for f in sender.__dataclass_fields__ if f != "pos"])


def _checked_receivers(
    receivers: Receiver | str | Sequence[Receiver | str],
) -> tuple[Receiver, ...]:
    """Parsed receivers; a ``resid_pre`` receiver replaces the whole stream, so it comes alone."""
    targets = parse_receivers(receivers)
    if any(isinstance(r, ResidPre) for r in targets) and len(targets) > 1:
        raise ConfigError(
            f"a resid_pre receiver replaces the whole residual stream entering its block, so "
            f"it must be the only receiver; got {[str(r) for r in targets]}."
        )
    return targets


def _finish(runs: PathRuns, per_pair: Tensor, normalize: bool) -> Float[Tensor, "group pair"]:
    if not normalize:
        return per_pair
    return restored_fraction(per_pair, runs.clean_metric, runs.corrupt_metric)


# --------------------------------------------------------------------------- engine
def _group_values(
    runs: PathRuns,
    groups: Sequence[tuple[Sender, ...]],
    receivers: tuple[Receiver, ...],
    metric: MetricFn,
    mode: str,
    freeze_mlps: bool,
) -> Float[Tensor, "group pair"]:
    """Patched metric of each pair for each group of senders (groups patched independently)."""
    active = [i for i, g in enumerate(groups) if any(reaches(s, r) for s in g for r in receivers)]
    out = runs.base_metric.repeat(len(groups), 1)
    if not active:
        return out
    live = [groups[i] for i in active]
    with torch.no_grad():
        if mode == "direct":
            values = _direct_values(runs, live, receivers)
        else:
            values = freeze_values(runs, live, receivers, freeze_mlps)
        logits = run_receivers(runs, len(live), values)
        out[active] = metric_per_pair(metric, logits, runs.n_pairs)
    return out


def _direct_values(
    runs: PathRuns, groups: Sequence[tuple[Sender, ...]], receivers: tuple[Receiver, ...]
) -> dict[Receiver, Tensor]:
    """Each receiver's input when it reads the base residual plus its groups' writes."""
    n, n_layers = len(groups), runs.model.cfg.n_layers
    writes = {s: runs.write(s) for g in groups for s in g}
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    zero = torch.zeros_like(runs.base_cache[final])
    # receivers reading the same residual with the same senders reaching them share it
    shared: dict[tuple, list[Receiver]] = {}
    for r in receivers:
        if isinstance(r, Logits):
            read = final
        elif isinstance(r, MLPInput):
            read = f"blocks.{r.layer}.hook_resid_mid"
        else:
            read = f"blocks.{r.layer}.hook_resid_pre"
        reach = tuple(tuple(reaches(s, r) for s in g) for g in groups)
        shared.setdefault((read, reach), []).append(r)
    values: dict[Receiver, Tensor] = {}
    for (read, reach), readers in shared.items():
        sums = [
            sum((writes[s] for s, hit in zip(g, hits, strict=True) if hit), zero)
            for g, hits in zip(groups, reach, strict=True)
        ]
        delta = rearrange(torch.stack(sums), "g b p d -> (b g) p d")
        values |= receiver_inputs(runs.model, readers, runs.base_act(read, n) + delta)
    return values
