"""The batched engine behind activation-patching sweeps: many patches, few forwards.

A sweep runs the *base* input (corrupt when denoising, clean when noising) once per
patch, each time with one activation replaced by the *source* run's at some
locations. Done naively that is one forward per patch. This engine instead

* stacks the N patches x B pairs along the batch dimension (row ``k * B + b`` is
  patch k applied to pair b) and runs them in chunks of at most ``max_batch`` rows;
* patches every row of a chunk at once with ``torch.where(mask, source, base)``,
  where row r's mask marks the locations of its patch;
* starts each patched run as late as possible, from the base run's cache, so the
  shared prefix is never recomputed. Two kinds of patch:

  - :class:`HookPatch`: the activation is replaced by a hook where it fires; the
    run starts at its block L from the cached ``blocks.L.hook_resid_pre``
    (``model.forward_from_layer``), or reruns the whole model for hooks outside
    the blocks (the DT embedding hooks). Used for q, k, v, pattern, embeddings.
  - :class:`ResidPatch`: the patched activation determines the residual stream at
    a later point directly (``resid_mid = resid_pre + attn_out``, ``attn_out =
    z W_O + b_O``, ``resid_post = resid_mid + mlp_out``, ``mlp_out = post W_out +
    b_out``), so the run starts there: at block L's MLP (``"mid"``) or at block
    L+1 (``"pre"``), skipping the computation the patch overwrites. Used for
    the residual stream, attn_out, mlp_out, z and neurons.

* recomputes only the token positions a residual patch can change: attention is
  causal, so positions before the first one a patch writes keep the base run's
  keys, values and logits (:mod:`dtlens.model.suffix`). Residual patches are sorted
  by that position and chunked so each forward starts at its chunk's first one.
  This path bypasses hooks, so it is taken only when the model has none attached;
  otherwise whole windows are recomputed and the user's hooks apply.

:func:`patched_metrics` is the general entry point (any hook, any set of masks, a
batch or a fixed tensor as the source, so it also does zero/mean ablations);
:func:`dtlens.analysis.patching.activation.activation_patching` builds the standard sweeps on
top of :func:`run_patch_groups`.

Example:
    >>> import torch
    >>> from tests.conftest import build_batch, build_model
    >>> model = build_model()
    >>> clean, corrupt = build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> masks = torch.zeros(2, 11, 1, dtype=torch.bool)  # patch 0: nothing
    >>> masks[1] = True  # patch 1: every position
    >>> out = patched_metrics(model, corrupt, clean, metric, "blocks.0.hook_resid_pre", masks)
    >>> out.shape  # [patch, pair]
    torch.Size([2, 2])
    >>> torch.allclose(out[1], metric(model(clean)), atol=1e-5)
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.analysis.metrics import MetricFn, metric_values
from dtlens.analysis.patching.chunks import plan_chunks
from dtlens.analysis.patching.groups import HookPatch, PatchGroup, ResidPatch
from dtlens.errors import BatchError, ConfigError
from dtlens.model.batch import TrajectoryBatch, check_is_batch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.suffix import PrefixCache, build_prefix_cache, forward_suffix, model_has_hooks

__all__ = [
    "DEFAULT_MAX_BATCH",
    "PROGRESS_MIN_CHUNKS",
    "HookPatch",
    "PatchGroup",
    "ResidPatch",
    "check_pair",
    "forward_from_mid",
    "patched_metrics",
    "run_patch_groups",
    "start_layer_of",
]

#: Rows (patches x pairs) per batched forward unless the caller says otherwise.
DEFAULT_MAX_BATCH = 1024
#: A progress bar is shown (with ``show_progress=True``) once a sweep has this many chunks.
PROGRESS_MIN_CHUNKS = 4


_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.")
_RESID_MID = re.compile(r"^blocks\.(\d+)\.hook_resid_mid$")


def start_layer_of(model: HookedDecisionTransformer, hook_name: str) -> int | None:
    """The block a hook patch of ``hook_name`` can start from; None means rerun everything.

    Hooks inside block L (``blocks.L.*``) start at L; everything else (the DT
    embedding hooks, ``hook_embed``, ``hook_pos_embed``, ``ln_final.*``) reruns
    the model from its inputs, which is always correct.

    Example:
        >>> start_layer_of(model, "blocks.1.attn.hook_z"), start_layer_of(model, "hook_rtg_embed")
        (1, None)
    """
    model.check_hook_names([hook_name])
    match = _BLOCK_HOOK.match(hook_name)
    return None if match is None else int(match.group(1))


def forward_from_mid(
    model: HookedDecisionTransformer,
    resid_mid: Float[Tensor, "batch pos d_model"],
    layer: int,
    batch: TrajectoryBatch | None = None,
) -> Float[Tensor, "batch pos action"]:
    """Logits from the residual stream between block ``layer``'s attention and MLP.

    Runs block ``layer``'s MLP (``resid_post = resid_mid + mlp(ln2(resid_mid))``,
    the pre-norm layout of TransformerLens' native blocks), then
    ``model.forward_from_layer`` from block ``layer + 1``. The MLP is
    position-wise, so ``batch`` (for its padding mask) only matters later.

    Example:
        >>> _, cache = model.run_with_cache(batch)
        >>> logits = forward_from_mid(model, cache["blocks.1.hook_resid_mid"], 1, batch)
    """
    block = model.core.blocks[layer]
    mlp = getattr(block, "mlp", None)
    resid_post = resid_mid if mlp is None else resid_mid + mlp(block.ln2(resid_mid))
    return model.forward_from_layer(resid_post, layer + 1, batch)


def run_patch_groups(
    model: HookedDecisionTransformer,
    base: TrajectoryBatch,
    base_resid: dict[int, Float[Tensor, "batch pos d_model"]],
    groups: Sequence[PatchGroup],
    metric: MetricFn,
    max_batch: int = DEFAULT_MAX_BATCH,
    show_progress: bool = True,
    desc: str = "patching",
    base_logits: Float[Tensor, "batch pos action"] | None = None,
) -> list[Float[Tensor, "patch batch"]]:
    """The metric of ``base`` under every patch of every group, in batched forwards.

    Rows are chunked so that each forward holds whole patches (all B pairs of each):
    at most ``max(1, max_batch // B)`` patches, i.e. at most ``max_batch`` rows unless
    a single patch (B rows) is already larger. When the model has no hooks attached,
    :class:`ResidPatch` groups run sorted by the first position each patch writes, in
    chunks that close at a new first position once they hold ``SUFFIX_MIN_ROWS`` rows
    (:mod:`dtlens.analysis.patching.chunks`), and each chunk recomputes only the positions
    from its first one. The metric
    is called once per patch on that patch's ``[B, n_tokens, n_actions]`` logits,
    exactly as a one-forward-per-patch loop would call it, so metrics with per-pair
    targets work unchanged.

    Args:
        model: the model (its mode is left as is; use ``model.eval()``).
        base: the B inputs every patch runs on (its padding mask is used).
        base_resid: ``{L: blocks.L.hook_resid_pre of base}`` for the start layer of
            every :class:`HookPatch` inside a block.
        groups: the patches.
        metric: ``logits [B, n_tokens, n_actions] -> [B]`` or a scalar
            (:data:`~dtlens.analysis.metrics.MetricFn`).
        max_batch: rows per forward (a larger batch is faster until memory runs out).
        show_progress: show a tqdm bar when there are at least
            :data:`PROGRESS_MIN_CHUNKS` chunks.
        desc: the progress bar's label.
        base_logits: the base run's logits, if known; with ``base_resid`` holding
            every layer they spare the extra base forward that recomputing only
            suffixes needs.

    Returns:
        One ``[n_patches, B]`` tensor of metric values per group (``[n_patches, 1]``
        for a scalar metric).

    Raises:
        ConfigError: ``max_batch`` is not a positive int.
        DTLensError: the metric returns neither ``[B]`` values nor a scalar.

    Example:
        >>> name = "blocks.1.hook_resid_pre"
        >>> _, base_cache = model.run_with_cache(corrupt, names_filter=name)
        >>> _, source_cache = model.run_with_cache(clean, names_filter=name)
        >>> every = lambda idx: torch.ones(len(idx), 1, 1, dtype=torch.bool)
        >>> group = PatchGroup(1, every, HookPatch(name, 1, source_cache[name]))
        >>> run_patch_groups(model, corrupt, {1: base_cache[name]}, [group], metric)[0].shape
        torch.Size([1, 2])
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be a positive int (rows per forward), got {max_batch!r}")
    n_pairs = base.batch_size
    per_chunk = max(1, max_batch // n_pairs)
    n_pos = base.n_tokens(model.cfg.tokens_per_step)
    suffix = any(_is_resid(g) for g in groups) and not model_has_hooks(model)
    plans = [
        plan_chunks(g, n_pairs, per_chunk, n_pos if suffix and _is_resid(g) else None)
        for g in groups
    ]
    # the plain re-run is cheaper than the hooked bridge even from position 0; building
    # its cache costs a forward only when base_logits / base_resid do not cover it
    prefix = build_prefix_cache(model, base, base_logits, base_resid) if suffix else None
    if prefix is None:
        plans = [plan_chunks(g, n_pairs, per_chunk, None) for g in groups]
    n_chunks = sum(len(plan) for plan in plans)
    bar = tqdm(
        total=n_chunks,
        desc=desc,
        unit="chunk",
        disable=not show_progress or n_chunks < PROGRESS_MIN_CHUNKS,
    )
    results = []
    with torch.no_grad(), bar:
        for group, plan in zip(groups, plans, strict=True):
            device = group.patch.source.device
            out = []
            for chunk in plan:
                pair = torch.arange(n_pairs, device=device).repeat(len(chunk.patches))
                mask = group.masks(chunk.patches.repeat_interleave(n_pairs))
                logits = _patched_logits(
                    model, base, base_resid, group.patch, pair, mask, prefix, chunk.first_pos
                )
                for patch_logits in logits.split(n_pairs):
                    out.append(metric_values(metric, patch_logits, n_pairs))
                bar.update()
            if not out:
                results.append(torch.zeros(0, n_pairs, device=device))
                continue
            order = torch.cat([chunk.patches for chunk in plan])
            values = torch.stack(out)
            results.append(torch.empty_like(values).index_copy_(0, order.to(values.device), values))
    return results


def _is_resid(group: PatchGroup) -> bool:
    return isinstance(group.patch, ResidPatch)


def _patched_logits(
    model: HookedDecisionTransformer,
    base: TrajectoryBatch,
    base_resid: dict[int, Tensor],
    patch: HookPatch | ResidPatch,
    pair: Int[Tensor, " row"],
    mask: Bool[Tensor, "row ..."],
    prefix: PrefixCache | None = None,
    first_pos: int | None = None,
) -> Float[Tensor, "row pos action"]:
    """One batched forward: row r is pair ``pair[r]`` with the locations ``mask[r]`` patched."""
    source = patch.source[pair]
    if isinstance(patch, ResidPatch):
        resid = patch.to_resid(torch.where(mask, source, patch.base[pair]), pair)
        if prefix is not None and first_pos is not None:
            if first_pos >= resid.shape[1]:
                return prefix.logits[pair]
            suffix = resid[:, first_pos:]
            mid = patch.point == "mid"
            return forward_suffix(model, prefix, suffix, patch.layer, first_pos, pair, mid)
        rows = None if base.padding_mask is None else base[pair]
        if patch.point == "mid":
            return forward_from_mid(model, resid, patch.layer, rows)
        return model.forward_from_layer(resid, patch.layer, rows)

    def write(act: Tensor, hook: object) -> Tensor:
        return torch.where(mask, source, act)

    rows = None if base.padding_mask is None else base[pair]
    with model.hooks(fwd_hooks=[(patch.hook_name, write)]):
        if patch.start_layer is None:
            return model(base[pair])
        resid = base_resid[patch.start_layer][pair]
        return model.forward_from_layer(resid, patch.start_layer, rows)


def patched_metrics(
    model: HookedDecisionTransformer,
    base: TrajectoryBatch,
    source: TrajectoryBatch | Float[Tensor, "batch ..."],
    metric: MetricFn,
    hook_name: str,
    masks: Bool[Tensor, "patch ..."],
    max_batch: int = DEFAULT_MAX_BATCH,
    show_progress: bool = True,
) -> Float[Tensor, "patch batch"]:
    """Run ``base`` once per mask with ``hook_name``'s activation taken from ``source`` where True.

    Patch n replaces the activation of every pair at the locations where
    ``masks[n]`` is True, by the source run's activation of the same pair (row b of
    ``source`` patches row b of ``base``). All patches run batched (see the module
    docstring); the values are raw metrics, not normalised.

    ``blocks.L.hook_resid_mid`` patches the residual stream between attention and
    MLP, as in HookedTransformer; ``"blocks.L.ln2.hook_in"`` patches the MLP's input
    only (the residual stream goes on unpatched).

    Args:
        model: the model.
        base: B inputs that receive the patches.
        source: B inputs whose activations are patched in, or the replacement
            activation itself, broadcastable to ``[B, *act_shape]`` (zeros or a
            mean activation make an ablation).
        metric: ``logits [B, n_tokens, n_actions] -> [B]`` or a scalar.
        hook_name: a full hook name (``"blocks.0.attn.hook_z"``, ``"hook_state_embed"``).
        masks: ``[n_patches, *mask_shape]`` bool, each mask broadcastable to the
            activation without its batch dimension (e.g. ``[n, pos, 1]`` for
            ``hook_resid_pre``, ``[n, 1, head, 1]`` for ``hook_z``).
        max_batch: rows (patches x pairs) per forward.
        show_progress: show a tqdm bar for sweeps of many chunks.

    Returns:
        ``[n_patches, B]``: the metric of each pair under each patch (``[n_patches, 1]``
        for a scalar metric).

    Raises:
        HookNameError: ``hook_name`` is not a hook of the model.
        BatchError: ``source`` or ``masks`` do not fit the activation (shapes named).
        DTLensError: the metric returns neither ``[B]`` values nor a scalar.

    Example:
        >>> masks = torch.eye(4, dtype=torch.bool)[:, None, :, None]  # one head each
        >>> patched_metrics(model, corrupt, clean, metric, "blocks.1.attn.hook_z", masks).shape
        torch.Size([4, 2])
    """
    start = start_layer_of(model, hook_name)
    names = [hook_name] + ([] if start is None else [f"blocks.{start}.hook_resid_pre"])
    with torch.no_grad():
        _, base_cache = model.run_with_cache(base, names_filter=names)
        act_shape = tuple(base_cache[hook_name].shape)
        if isinstance(source, TrajectoryBatch):
            check_pair(base, source)
            _, source_cache = model.run_with_cache(source, names_filter=[hook_name])
            source_act = source_cache[hook_name]
        else:
            source_act = _expand_source(source, act_shape)
    _check_masks(masks, hook_name, act_shape)
    resid = {} if start is None else {start: base_cache[f"blocks.{start}.hook_resid_pre"]}
    if _RESID_MID.match(hook_name):
        patch = ResidPatch(start, "mid", source_act, base_cache[hook_name], lambda act, pair: act)
    else:
        patch = HookPatch(hook_name, start, source_act)
    group = PatchGroup(len(masks), masks.to(source_act.device).__getitem__, patch)
    return run_patch_groups(model, base, resid, [group], metric, max_batch, show_progress)[0]


def _check_masks(masks: object, hook_name: str, act_shape: tuple[int, ...]) -> None:
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
        raise BatchError(f"masks must be a bool tensor [n_patches, *mask_shape], got {masks!r}")
    mask_shape = tuple(masks.shape[1:])
    if len(mask_shape) != len(act_shape) - 1 or any(
        m not in (1, a) for m, a in zip(mask_shape, act_shape[1:], strict=True)
    ):
        raise BatchError(
            f"each mask must broadcast to the activation {hook_name} without its batch "
            f"dimension, {list(act_shape[1:])} (size 1 or equal per dimension); "
            f"got masks of shape {list(masks.shape)}."
        )


def _expand_source(source: object, act_shape: tuple[int, ...]) -> Tensor:
    if not isinstance(source, Tensor):
        raise BatchError(
            f"source must be a TrajectoryBatch or a tensor of activations, got "
            f"{type(source).__name__}."
        )
    try:
        return source.expand(act_shape)
    except RuntimeError:
        raise BatchError(
            f"a source activation must broadcast to the activation's shape {list(act_shape)} "
            f"([batch, ...]); got {list(source.shape)}."
        ) from None


def check_pair(
    a: TrajectoryBatch, b: TrajectoryBatch, names: tuple[str, str] = ("clean", "corrupt")
) -> None:
    """Raise BatchError unless two batches pair up row by row (same B and window shape).

    ``names`` are how the message calls ``a`` and ``b``, e.g. when one of them is not a
    batch at all (a tensor, a list of batches, None).

    Example:
        >>> check_pair(clean, corrupt)  # None: row i of clean pairs with row i of corrupt
    """
    for name, batch in zip(names, (a, b), strict=True):
        check_is_batch(batch, name)
    fields = {
        "obs": (a.obs.shape, b.obs.shape),
        "actions": (a.actions.shape, b.actions.shape),
        "rtg": (_shape(a.rtg), _shape(b.rtg)),
        "timesteps": (a.timesteps.shape, b.timesteps.shape),
        "padding_mask": (_shape(a.padding_mask), _shape(b.padding_mask)),
    }
    for name, (sa, sb) in fields.items():
        if sa != sb:
            raise BatchError(
                f"clean and corrupt must pair up row by row with the same window: {name} is "
                f"{_fmt(sa)} in one and {_fmt(sb)} in the other. Build both from the same "
                "episodes (e.g. with dtlens.analysis.edits) or pad them to the same length."
            )


def _shape(t: Tensor | None) -> torch.Size | None:
    return None if t is None else t.shape


def _fmt(shape: torch.Size | None) -> str:
    return "None" if shape is None else str(list(shape))
