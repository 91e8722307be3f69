"""Activation patching sweeps: which activations carry the difference between two inputs.

Given B clean/corrupt pairs (row i of ``clean`` pairs with row i of ``corrupt``: same
window, differing in one fact), :func:`activation_patching` measures, for every
location of one kind of activation (every layer x position of the residual stream,
every head, every neuron ...), the metric of one input with that location taken
from the other input's run:

- ``direction="denoise"``: run *corrupt*, patch in the *clean* activation;
- ``direction="noise"``: run *clean*, patch in the *corrupt* activation.

With ``normalize=True`` each value is the **restored fraction**, computed per pair
and then averaged over the B pairs::

    mean_i (patched_i - corrupt_i) / (clean_i - corrupt_i)

where ``clean_i`` / ``corrupt_i`` are the metric of pair i on the unpatched clean /
corrupt run and ``patched_i`` on the patched run. It is the same formula in both
directions (:func:`dtlens.analysis.metrics.restored_logit_diff`): 1 = the patched
run gives the clean metric, 0 = the corrupt one. Denoising starts at 0 (nothing
patched) and a location that restores the behaviour scores near 1; noising starts
at 1 and a location that breaks the behaviour scores near 0. (For the noising
*effect* ``1 - value``, see :func:`dtlens.analysis.metrics.patching_effect`.)
With ``normalize=False`` each value is ``mean_i patched_i``, the raw metric.
Per-pair values and both baselines are in the result's ``info``.

Every sweep runs batched (see :mod:`dtlens.analysis.patching.engine`): all patches x
pairs are stacked along the batch dimension, chunked to ``max_batch`` rows, and
patches inside block L start from the cached ``blocks.L.hook_resid_pre`` instead of
recomputing layers < L.

Sweeps (``hook`` -> valid ``by``; axes may be given in any order, the result's axes
follow it):

====================================================  ==================================
hook                                                  by
====================================================  ==================================
``resid_pre``, ``resid_mid``, ``resid_post``,         ``("layer", "pos")``
``attn_out``, ``mlp_out``
``z``, ``q``, ``k``, ``v``                            ``("layer", "head")``,
                                                      ``("layer", "head", "pos")``
``pattern``                                           ``("layer", "head")``,
                                                      ``("layer", "head", "pos")``
                                                      (pos = query position)
``mlp_post`` (one layer: pass ``layer=``)             ``("neuron",)``, ``("neuron", "pos")``
``rtg_embed``, ``state_embed``, ``action_embed``,     ``("pos",)`` (pos = the timestep of
``time_embed``                                        the embedding: R1.., S1.., A1.., t1..)
====================================================  ==================================

Examples:
    >>> import torch
    >>> from tests.conftest import build_batch, build_model
    >>> model = build_model()
    >>> clean, corrupt = build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]  # left - right at S_T
    >>> result = activation_patching(model, clean, corrupt, metric, "resid_pre")
    >>> result.axes, tuple(result.values.shape), result.labels["pos"][:3]
    (('layer', 'pos'), (2, 11), ['R1', 'S1', 'A1'])
    >>> round(result.value(layer="0", pos="S4"), 4) == round(
    ...     activation_patching(model, clean, corrupt, metric, "resid_pre").value(
    ...         layer="0", pos="S4"), 4)
    True
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.ActivationCache import ActivationCache

from dtlens.analysis.metrics import MetricFn, metric_values
from dtlens.analysis.patching.engine import DEFAULT_MAX_BATCH, run_patch_groups
from dtlens.analysis.patching.groups import HookPatch, PatchGroup, ResidPatch
from dtlens.analysis.patching.results import PatchingResult
from dtlens.analysis.patching.sweep_call import check_sweep_call, sweep_result
from dtlens.analysis.patching.sweeps import PATCHING_SWEEPS
from dtlens.analysis.patching.sweeps import SWEEPS as _SWEEPS
from dtlens.analysis.patching.sweeps import location_masks as _location_masks
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["PATCHING_SWEEPS", "activation_patching"]


def activation_patching(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: MetricFn,
    hook: str = "resid_pre",
    by: tuple[str, ...] = ("layer", "pos"),
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    *,
    layer: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    show_progress: bool = True,
) -> PatchingResult:
    """Patch one kind of activation at every location of a sweep; return the metric per location.

    See the module docstring for directions, the normalisation and the valid
    ``hook`` / ``by`` combinations. All patches run in batched forwards that reuse
    the cached prefix below the patched layer; the values equal a one-forward-per-
    patch loop's to float precision.

    Args:
        model: the model (put it in eval mode).
        clean: B clean windows.
        corrupt: B corrupt windows, the same window shape as ``clean``; row i pairs
            with row i of ``clean``. Padding masks are honoured (each run uses its
            own batch's mask).
        metric: ``logits [B, n_tokens, n_actions] -> [B]``, e.g.
            ``dtlens.analysis.metrics.make_logit_diff_metric("left", "right")``, or
            a scalar such as ``lambda logits: (logits[:, -1, 0] - logits[:, -1,
            1]).mean()`` (:data:`~dtlens.analysis.metrics.MetricFn`); called once per
            patch on that patch's B pairs. With a scalar metric the restored fraction
            is that of the scalar. Its ``name`` attribute, if any, becomes the
            result's ``metric_name``.
        hook: which activation (a key of :data:`PATCHING_SWEEPS`).
        by: the sweep axes: ``"layer"``, ``"pos"``, ``"head"``, ``"neuron"``.
        direction: ``"denoise"`` (corrupt run, clean activations) or ``"noise"``
            (clean run, corrupt activations).
        normalize: report the restored fraction (True) or the raw metric (False).
        layer: the layer of a ``mlp_post`` neuron sweep (only for ``mlp_post``).
        max_batch: rows (patches x pairs) per forward; lower it if memory is short.
        show_progress: show a tqdm bar for sweeps of many chunks.

    Returns:
        A :class:`PatchingResult` with axes ``by`` and labels ``"0", "1"`` (layers),
        ``"R1", "S1", ...`` (token positions; an embedding hook's timesteps are
        ``"R1".."RT"``, ``"S1"..``, ``"A1"..``, ``"t1"..``), ``"H0"..`` (heads) and
        ``"N0"..`` (neurons). ``info`` holds ``hook``, ``hook_names``, ``direction``,
        ``normalize``, ``layer``, ``clean_metric`` and ``corrupt_metric`` (``[B]``,
        or ``[1]`` for a scalar metric) and ``per_pair`` (the values before averaging,
        ``[*axes, B]``; None for a scalar metric).

    Raises:
        DTLensError: an unknown ``hook`` or ``by`` (the message lists the valid
            ones), or ``normalize=True`` with a pair whose clean and corrupt
            metrics are equal.
        ConfigError: a bad ``direction``, ``layer`` or ``max_batch``.
        BatchError: ``clean`` and ``corrupt`` windows differ in shape.

    Examples:
        >>> result = activation_patching(model, clean, corrupt, metric, "z",
        ...                              by=("layer", "head"), direction="noise")
        >>> result.labels["head"]
        ['H0', 'H1', 'H2', 'H3']
    """
    call = check_sweep_call(model, clean, corrupt, hook, by, direction, normalize, layer)
    sweep, axes, layers, hook_names = call.sweep, call.axes, call.layers, call.hook_names
    starts = [lay for lay in layers if lay is not None]
    names = hook_names + [
        f"blocks.{lay}.hook_resid_{point}" for lay in starts for point in ("pre", "mid")
    ]
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean, names_filter=names)
        corrupt_logits, corrupt_cache = model.run_with_cache(corrupt, names_filter=names)
    n_pairs = clean.batch_size
    clean_metric = metric_values(metric, clean_logits, n_pairs)
    corrupt_metric = metric_values(metric, corrupt_logits, n_pairs)
    base, base_cache, source_cache = (
        (corrupt, corrupt_cache, clean_cache)
        if direction == "denoise"
        else (clean, clean_cache, corrupt_cache)
    )

    act_shape = tuple(source_cache[hook_names[0]].shape[1:])
    sizes = [act_shape[sweep.dims.index(a)] for a in axes]
    masks = partial(_location_masks, dims=sweep.dims, axes=axes, sizes=sizes)
    groups = [
        PatchGroup(math.prod(sizes), masks, _patch(model, hook, lay, base_cache, source_cache))
        for lay in layers
    ]
    base_resid = {lay: base_cache[f"blocks.{lay}.hook_resid_pre"] for lay in starts}
    base_logits = corrupt_logits if direction == "denoise" else clean_logits
    per_group = run_patch_groups(
        model, base, base_resid, groups, metric, max_batch, show_progress, f"patching {hook}",
        base_logits,
    )  # fmt: skip
    patched = torch.stack(per_group).reshape(len(layers), *sizes, len(clean_metric))
    return sweep_result(call, model, clean, patched, clean_metric, corrupt_metric, metric)


def _patch(
    model: HookedDecisionTransformer,
    hook: str,
    layer: int | None,
    base_cache: ActivationCache,
    source_cache: ActivationCache,
) -> HookPatch | ResidPatch:
    """How a sweep of ``hook`` at ``layer`` patches, starting each run as late as possible.

    Activations that fix the residual stream at a later point are turned into it
    outside the model (``attn_out = z W_O + b_O``, ``resid_mid = resid_pre +
    attn_out``, ``mlp_out = post W_out + b_out``, ``resid_post = resid_mid +
    mlp_out``); q, k, v and the pattern are patched by a hook inside block
    ``layer``; embedding hooks by a hook in a full forward.
    """
    name = _SWEEPS[hook].template.format(layer=layer)
    source = source_cache[name]
    if layer is None:
        return HookPatch(name, None, source)
    own = base_cache[name]
    pre = base_cache[f"blocks.{layer}.hook_resid_pre"]
    mid = base_cache[f"blocks.{layer}.hook_resid_mid"]
    core = model.core
    if hook == "resid_pre":
        return ResidPatch(layer, "pre", source, own, _as_is)
    if hook == "resid_mid":
        return ResidPatch(layer, "mid", source, own, _as_is)
    if hook == "resid_post":
        return ResidPatch(layer + 1, "pre", source, own, _as_is)
    if hook == "attn_out":
        return ResidPatch(layer, "mid", source, own, partial(_added_to, pre))
    if hook == "mlp_out":
        return ResidPatch(layer + 1, "pre", source, own, partial(_added_to, mid))
    if hook == "z":
        w_o = core.W_O[layer].detach().flatten(0, 1)  # [head * d_head, d_model]
        out = partial(_projected, w_o, core.b_O[layer].detach(), pre)
        return ResidPatch(layer, "mid", source, own, lambda z, pair: out(z.flatten(-2), pair))
    if hook == "mlp_post":
        out = partial(_projected, core.W_out[layer].detach(), core.b_out[layer].detach(), mid)
        return ResidPatch(layer + 1, "pre", source, own, out)
    return HookPatch(name, layer, source)  # q, k, v, pattern change attention itself


def _as_is(act: Float[Tensor, "row pos d_model"], pair: Tensor) -> Float[Tensor, "row pos d_model"]:
    return act


def _added_to(
    resid: Float[Tensor, "batch pos d_model"], act: Float[Tensor, "row pos d_model"], pair: Tensor
) -> Float[Tensor, "row pos d_model"]:
    return resid[pair] + act


def _projected(
    weight: Float[Tensor, "d_in d_model"],
    bias: Float[Tensor, " d_model"],
    resid: Float[Tensor, "batch pos d_model"],
    act: Float[Tensor, "row pos d_in"],
    pair: Tensor,
) -> Float[Tensor, "row pos d_model"]:
    return resid[pair] + (act @ weight + bias)
