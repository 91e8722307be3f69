"""Path patching: how much of a clean/corrupt difference flows along sender -> receiver edges.

Activation patching asks "does this component matter?"; path patching asks "does what
these *senders* write into the residual stream matter *as read by* these
*receivers*?" (Wang et al. 2022, IOI; Goldowsky-Dill et al. 2023). Senders are heads,
MLPs and embeddings; receivers are heads' q/k/v inputs, MLP inputs or the logits (the
node types and shorthands are in :mod:`dtlens.analysis.path_nodes`).

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
:class:`~dtlens.analysis.path_nodes.Logits` receiver replaces the final residual,
hiding every other receiver's effect. A sender that reaches no receiver (a head at or
after a receiver head's layer) changes nothing: its value is the base run's metric.

Values. ``metric(logits [B, pos, action]) -> [B]`` is computed per pair. With
``normalize=True`` (as :func:`dtlens.analysis.patching.activation_patching`) each
pair's value is the **restored fraction** ``(patched - corrupt) / (clean - corrupt)``
(:func:`~dtlens.analysis.metrics.restored_logit_diff`), then averaged over the pairs.
It is the same formula in both directions: denoising starts at 0 (senders that
change nothing) and reaches 1 where the path alone restores the clean behaviour;
noising starts at 1 and falls towards 0 where the path alone breaks it. With
``normalize=False`` the value is the mean patched metric.

Example:
    >>> value = path_patching(model, clean, corrupt, ["L0H1", "MLP0"], "L1H2.q", metric)
    >>> sweep = path_patching_sweep(model, clean, corrupt, "logits", metric)
    >>> sweep.value(layer="0", head="3")  # restored fraction through L0H3's direct path
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.analysis.metrics import restored_logit_diff
from dtlens.analysis.path_io import receiver_hook, receiver_inputs
from dtlens.analysis.path_nodes import (
    Embed,
    Head,
    HeadInput,
    Logits,
    MLPInput,
    Position,
    Receiver,
    Sender,
    parse_receivers,
    parse_senders,
    reaches,
)
from dtlens.analysis.path_runs import MetricFn, PathRuns, metric_per_pair
from dtlens.analysis.results import PatchingResult
from dtlens.errors import ConfigError, DTLensError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.suffix import forward_suffix

__all__ = ["DEFAULT_MAX_BATCH", "path_patching", "path_patching_sweep"]

#: Rows (sender heads x pairs) per batched forward of a sweep unless the caller says otherwise.
DEFAULT_MAX_BATCH = 1024

Mode = Literal["direct", "freeze"]
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
        receivers: ``"L1H2.q"``-style head inputs, MLP inputs, ``"logits"``.
        metric: ``logits [B, pos, action] -> [B]``, averaged over the pairs.
        mode: ``"direct"`` (exact edge patching) or ``"freeze"`` (IOI's three steps).
        direction: ``"denoise"`` (corrupt run, clean writes) or ``"noise"`` (the reverse).
        freeze_mlps: in ``"freeze"`` mode, also freeze every MLP but the senders.
        normalize: return the restored fraction (mean over pairs) instead of the mean
            patched metric.

    Returns:
        A 0-d tensor.

    Raises:
        ConfigError: bad mode, direction, node, position or metric output.
        BatchError: clean and corrupt differ in shape or padding.
        DTLensError: ``normalize=True`` and a pair's clean and corrupt metrics agree.

    Example:
        >>> from dtlens.analysis.metrics import make_logit_diff_metric
        >>> metric = make_logit_diff_metric("left", "right")
        >>> path_patching(model, clean, corrupt, "L0H1", "logits", metric)
        tensor(0.0312)
    """
    nodes = parse_senders(senders)
    targets = parse_receivers(receivers)
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
    max_batch: int = DEFAULT_MAX_BATCH,
    show_progress: bool = True,
) -> PatchingResult:
    """:func:`path_patching` with every head, one at a time, as the sender, batched.

    Each (sender head, pair) is one row of a batched forward; rows are chunked to at
    most ``max_batch`` (whole senders: at least the B pairs of one). Patched runs start at the
    first receiver's layer from the cached base residual (``forward_from_layer``), a
    :class:`~dtlens.analysis.path_nodes.Logits` receiver in ``"direct"`` mode needs no
    block at all, and heads that reach no receiver are not run (their value is the
    base metric, effect 0). With no hook attached to the model, ``"freeze"`` step 2
    runs no attention (every head's ``z`` is fixed) and head-input receivers are
    patched in plain re-runs (:func:`dtlens.model.suffix.forward_suffix`); with a hook
    attached, both run through the hooked model, so the hook applies.

    ``model``, ``clean``, ``corrupt``, ``receivers``, ``metric``, ``mode``, ``direction``,
    ``freeze_mlps`` and ``normalize`` are as for :func:`path_patching`.

    Args:
        sender_pos: restrict every sender head to these positions (ints or labels).
        max_batch: rows per batched forward (the memory budget).
        show_progress: show a tqdm bar when there is more than one chunk.

    Returns:
        ``PatchingResult`` with ``values [n_layers, n_heads]``, axes ``("layer", "head")``,
        labels ``"0".."n-1"``; ``info`` holds ``mode``, ``direction``, ``freeze_mlps``,
        ``normalize``, ``receivers``, ``sender_pos``, ``clean_metric`` and
        ``corrupt_metric`` (``[B]``) and ``per_pair`` (``[n_layers, n_heads, B]``).

    Example:
        >>> result = path_patching_sweep(model, clean, corrupt, ["L2H0.q", "L2H1.q"], metric)
        >>> result.value(layer="1", head="4"), result.values.shape
        (0.21, torch.Size([3, 8]))
    """
    cfg = model.cfg
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be a positive int, got {max_batch!r}.")
    pos = None if sender_pos is None else tuple(sender_pos)
    heads = [Head(layer, head, pos) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    targets = parse_receivers(receivers)
    runs = PathRuns(model, clean, corrupt, metric, direction, mode, normalize, (*heads, *targets))
    groups = [(h,) for h in heads]
    size = max(1, max_batch // runs.n_pairs)
    chunks = [groups[i : i + size] for i in range(0, len(groups), size)]
    bar = tqdm(chunks, desc="path patching", disable=not show_progress or len(chunks) <= 1)
    per_pair = torch.cat([_group_values(runs, c, targets, metric, mode, freeze_mlps) for c in bar])
    per_pair = _finish(runs, per_pair, normalize).reshape(cfg.n_layers, cfg.n_heads, -1)
    name = getattr(metric, "name", None) or getattr(metric, "__name__", "metric")
    name = "metric" if name == "<lambda>" else str(name)
    return PatchingResult(
        values=per_pair.mean(-1),
        axes=("layer", "head"),
        labels={
            "layer": [str(i) for i in range(cfg.n_layers)],
            "head": [str(i) for i in range(cfg.n_heads)],
        },
        metric_name=f"restored fraction of {name}" if normalize else name,
        info={
            "mode": mode,
            "direction": direction,
            "freeze_mlps": freeze_mlps,
            "normalize": normalize,
            "receivers": [str(r) for r in targets],
            "sender_pos": pos,
            "clean_metric": runs.clean_metric,
            "corrupt_metric": runs.corrupt_metric,
            "per_pair": per_pair,
        },
    )


def _finish(runs: PathRuns, per_pair: Tensor, normalize: bool) -> Float[Tensor, "group pair"]:
    if not normalize:
        return per_pair
    try:
        return restored_logit_diff(per_pair, runs.clean_metric, runs.corrupt_metric)
    except DTLensError as err:
        raise DTLensError(f"{err} Or pass normalize=False for the raw metric.") from None


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
            values = _freeze_values(runs, live, receivers, freeze_mlps)
        logits = _run_receivers(runs, len(live), values)
        out[active] = metric_per_pair(metric, logits, runs.n_pairs)
    return out


def _layer(node: Sender | Receiver, n_layers: int) -> int:
    """The layer whose ``hook_resid_pre`` a patched run must start from to cover ``node``."""
    if isinstance(node, Embed):
        return 0
    return n_layers if isinstance(node, Logits) else node.layer


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


def _freeze_values(
    runs: PathRuns,
    groups: Sequence[tuple[Sender, ...]],
    receivers: tuple[Receiver, ...],
    freeze_mlps: bool,
) -> dict[Receiver, Tensor]:
    """Step 2 of IOI path patching: receiver inputs with everything but the senders frozen."""
    model, cfg, n = runs.model, runs.model.cfg, len(groups)
    n_pos = runs.n_tokens
    nodes = [s for g in groups for s in g] + list(receivers)
    start = min(_layer(node, cfg.n_layers) for node in nodes)
    resid = runs.base_act(f"blocks.{start}.hook_resid_pre", n)
    if any(isinstance(s, Embed) for g in groups for s in g):
        zero = torch.zeros_like(runs.base_cache["blocks.0.hook_resid_pre"])
        sums = [sum((runs.write(s) for s in g if isinstance(s, Embed)), zero) for g in groups]
        resid = resid + rearrange(torch.stack(sums), "g b p d -> (b g) p d")
    hooks = []
    for layer in range(start, cfg.n_layers):
        z_mask = torch.zeros(n, n_pos, cfg.n_heads, 1, dtype=torch.bool, device=model.device)
        mlp_mask = torch.zeros(n, n_pos, 1, dtype=torch.bool, device=model.device)
        for i, group in enumerate(groups):
            for s in group:
                if isinstance(s, Embed) or s.layer != layer:
                    continue
                where = runs.positions[s]
                where = slice(None) if where is None else where
                if isinstance(s, Head):
                    z_mask[i, where, s.head] = True
                else:
                    mlp_mask[i, where] = True
        z_mask, mlp_mask = z_mask.repeat(runs.n_pairs, 1, 1, 1), mlp_mask.repeat(runs.n_pairs, 1, 1)
        z_name, mlp_name = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"
        hooks.append(
            (z_name, partial(_mix, z_mask, runs.base_act(z_name, n), runs.src_act(z_name, n)))
        )
        if freeze_mlps:
            base_mlp = runs.base_act(mlp_name, n)
            hooks.append((mlp_name, partial(_mix, mlp_mask, base_mlp, runs.src_act(mlp_name, n))))
        elif bool(mlp_mask.any()):
            hooks.append((mlp_name, partial(_mix_live, mlp_mask, runs.src_act(mlp_name, n))))
    if runs.prefix is not None:
        return _frozen_inputs(runs, resid, start, dict(hooks), receivers, freeze_mlps)
    store: dict[Receiver, Tensor] = {}
    for name, at_hook in _by_hook(receivers).items():
        hooks.append((name, partial(_capture, store, at_hook)))
    with model.hooks(hooks):
        model.forward_from_layer(resid, start, runs.base.repeat(n))
    return store


def _frozen_inputs(
    runs: PathRuns,
    resid: Float[Tensor, "row pos d_model"],
    start: int,
    mixers: dict[str, Callable],
    receivers: tuple[Receiver, ...],
    freeze_mlps: bool,
) -> dict[Receiver, Tensor]:
    """Step 2 without running attention: every head's ``z`` is fixed, so only MLPs compute.

    ``mixers`` are the step's hook functions by hook name: every layer's ``hook_z``
    mixer, and the ``hook_mlp_out`` mixers (every layer's fixed output with
    ``freeze_mlps``, else the live output with the senders' at their positions, where
    an MLP sends). Each layer adds ``z W_O + b_O`` of the mixed ``z`` and its MLP's
    output. Receivers read the residual stream where their hooks would: ``resid_pre``
    (q/k/v, through :func:`receiver_inputs`), ``resid_mid`` (MLP input), the final
    residual (logits).
    """
    model, blocks = runs.model, runs.prefix.blocks
    store: dict[Receiver, Tensor] = {}
    for layer in range(start, model.cfg.n_layers):
        readers = [r for r in receivers if isinstance(r, HeadInput) and r.layer == layer]
        store |= receiver_inputs(model, readers, resid)
        z = mixers[f"blocks.{layer}.attn.hook_z"](None, None)
        attn = model.core.blocks[layer].attn
        resid = resid + torch.einsum("bphe,hed->bpd", z, attn.W_O) + attn.b_O
        store |= {r: resid for r in receivers if isinstance(r, MLPInput) and r.layer == layer}
        block = blocks[layer]
        if block.mlp is None:
            continue
        mixer = mixers.get(f"blocks.{layer}.hook_mlp_out")
        if freeze_mlps:  # a frozen MLP's output is fixed: nothing to compute
            resid = resid + mixer(None, None)
            continue
        mlp_out = block.mlp(block.ln2(resid))
        resid = resid + (mlp_out if mixer is None else mixer(mlp_out, None))
    store |= {r: resid for r in receivers if isinstance(r, Logits)}
    return store


def _run_receivers(runs: PathRuns, n: int, values: dict[Receiver, Tensor]) -> Tensor:
    """Step 3: the base run (n rows per pair) with every receiver's input replaced."""
    model, n_layers = runs.model, runs.model.cfg.n_layers
    rows = runs.base.repeat(n)
    if Logits() in values:  # the final residual is replaced: nothing upstream matters
        return model.forward_from_layer(values[Logits()], n_layers, rows)
    start = min(_layer(r, n_layers) for r in values)
    if all(isinstance(r, HeadInput) for r in values) and runs.prefix is not None:
        return _run_head_receivers(runs, n, values, start)
    hooks = [(name, partial(_replace, rs, values)) for name, rs in _by_hook(list(values)).items()]
    with model.hooks(hooks):
        return model.forward_from_layer(
            runs.base_act(f"blocks.{start}.hook_resid_pre", n), start, rows
        )


def _run_head_receivers(
    runs: PathRuns, n: int, values: dict[Receiver, Tensor], start: int
) -> Float[Tensor, "row pos action"]:
    """Step 3 for head-input receivers only, without hooks (same numbers, less overhead)."""
    by_input: dict[tuple[int, str], list[HeadInput]] = {}
    for r in values:
        by_input.setdefault((r.layer, r.kind), []).append(r)
    head_inputs = {
        key: ([r.head for r in rs], torch.stack([values[r] for r in rs], dim=2))
        for key, rs in by_input.items()
    }
    pair = torch.arange(runs.n_pairs, device=runs.base_logits.device).repeat_interleave(n)
    resid = runs.base_act(f"blocks.{start}.hook_resid_pre", n)
    return forward_suffix(runs.model, runs.prefix, resid, start, 0, pair, head_inputs=head_inputs)


def _mix(mask: Tensor, base: Tensor, src: Tensor, act: Tensor, hook: object) -> Tensor:
    return torch.where(mask, src, base)


def _mix_live(mask: Tensor, src: Tensor, act: Tensor, hook: object) -> Tensor:
    return torch.where(mask, src, act)


def _by_hook(receivers: Sequence[Receiver]) -> dict[str, list[Receiver]]:
    """Receivers grouped by the hook holding their input (one hook per point is cheaper)."""
    out: dict[str, list[Receiver]] = {}
    for r in receivers:
        out.setdefault(receiver_hook(r), []).append(r)
    return out


def _capture(store: dict, receivers: list[Receiver], act: Tensor, hook: object) -> None:
    for r in receivers:
        store[r] = (act[:, :, r.head] if isinstance(r, HeadInput) else act).clone()


def _replace(receivers: list[Receiver], values: dict, act: Tensor, hook: object) -> Tensor:
    if not isinstance(receivers[0], HeadInput):
        return values[receivers[0]]
    act = act.clone()
    for r in receivers:
        act[:, :, r.head] = values[r]
    return act
