"""Attribution patching: a first-order estimate of every activation-patching sweep at once.

Background:
    Activation patching (:func:`~dtlens.analysis.patching.activation.activation_patching`)
    runs the model once per location. *Attribution patching* (Nanda, "Attribution
    Patching: Activation Patching At Industrial Scale", 2023; Syed, Rager & Conmy,
    "Attribution Patching Outperforms Automated Circuit Discovery", 2023) replaces
    each of those runs by the first-order Taylor term of the metric around the
    *base* run (the corrupt run when denoising, the clean run when noising)::

        patched(loc) ~= metric(base) + sum_{i in loc} (a_source - a_base)_i * d metric / d a_i

    where ``a`` is the patched activation, ``a_source`` its value on the other run and
    the gradient is taken on the base run. One forward of the source run, one forward
    of the base run and one backward give the estimate of every location of a sweep
    (every layer x position, head, neuron or embedding timestep), whatever its size.

    The estimate is exact where the metric is an affine function of the patched
    activation (e.g. ``resid_post`` / ``mlp_out`` / ``mlp_post`` of the last layer of
    a model without a final norm, with a metric linear in the logits), and good where
    the change is small compared to the curvature on its way to the metric. It is
    poor where a patch moves through a saturated nonlinearity: a softmax (``q`` and
    ``k`` change the attention pattern; a confident action distribution), a
    LayerNorm whose scale the patch changes a lot, or a large change in the residual
    stream of an early layer. Kramár et al. ("AtP*", 2024) discuss the failure modes.
    Check an estimate against the exact sweep with ``compare=True``.

What is estimated is exactly what ``activation_patching`` patches, for every hook of
:data:`~dtlens.analysis.patching.sweeps.PATCHING_SWEEPS`: the residual stream at a
point (``resid_pre``, ``resid_mid``, ``resid_post``), a component's output added to
it (``attn_out``, ``mlp_out``), a head's ``z``, a neuron, ``q`` / ``k`` / ``v`` /
``pattern`` inside attention, and the DT embeddings (the time embedding of step t is
added to each of that step's tokens, so its gradient sums over them). The gradient
of the residual stream between attention and MLP is read at ``blocks.L.hook_attn_out``
(``resid_mid = resid_pre + attn_out``, so the two gradients are equal), never at
``blocks.L.ln2.hook_in``, the MLP's input, whose gradient is the MLP's path alone; so
``resid_mid`` estimates the same residual patch ``activation_patching`` makes.

The gradients are those of ``sum_b metric(logits)[b]`` for a per-pair metric (the B
rows are independent, so row b's gradient is that of its own metric) or of the scalar
for a scalar metric, taken with ``torch.autograd.grad`` on zero tensors added at the
hooks: the model's parameters get no ``.grad``.

Example:
    >>> import torch
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> fast = attribution_patching(model, clean, corrupt, metric, "z", by=("layer", "head"))
    >>> fast.axes, tuple(fast.values.shape), fast.info["method"]
    (('layer', 'head'), (2, 4), 'attribution')
    >>> checked = attribution_patching(model, clean, corrupt, metric, "resid_pre",
    ...                                normalize=False, compare=True)
    >>> sorted(k for k in checked.info if k in ("exact", "max_abs_error", "rank_correlation"))
    ['exact', 'max_abs_error', 'rank_correlation']
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.metrics import MetricFn, metric_values
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.engine import DEFAULT_MAX_BATCH
from dtlens.analysis.patching.results import PatchingResult
from dtlens.analysis.patching.sweep_call import check_sweep_call, sweep_result
from dtlens.analysis.patching.sweeps import SWEEPS, Sweep, resolve_sweep
from dtlens.errors import ConfigError, DTLensError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["attribution_patching", "gradient_hook_name", "rank_correlation"]


def attribution_patching(
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
    compare: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
    show_progress: bool = True,
) -> PatchingResult:
    """Estimate ``activation_patching`` of the same call to first order: 2 forwards, 1 backward.

    Every value is ``metric(base) + (a_source - a_base) . d metric / d a`` summed over
    the location's entries (see the module docstring), averaged over pairs like
    ``activation_patching``'s: the estimated patched metric with
    ``normalize=False``, the estimated restored fraction ``(patched_b - corrupt_b) /
    (clean_b - corrupt_b)`` with ``normalize=True``. Arguments, axes, labels and
    ``info`` are those of ``activation_patching``.

    Args:
        model: the model (put it in eval mode; parameters need not require grad).
        clean: B clean windows.
        corrupt: B corrupt windows, the same window shape as ``clean``; row i pairs
            with row i of ``clean``. Padding masks are honoured.
        metric: ``logits [B, n_tokens, n_actions] -> [B]`` or a scalar
            (:data:`~dtlens.analysis.metrics.MetricFn`); it must be differentiable
            (no ``argmax``, no ``.detach()``).
        hook: which activation (a key of
            :data:`~dtlens.analysis.patching.sweeps.PATCHING_SWEEPS`).
        by: the sweep axes: ``"layer"``, ``"pos"``, ``"head"``, ``"neuron"``.
        direction: ``"denoise"`` (gradient on the corrupt run, clean activations) or
            ``"noise"`` (gradient on the clean run, corrupt activations).
        normalize: report the restored fraction (True) or the raw metric (False).
        layer: the layer of a ``mlp_post`` neuron sweep (only for ``mlp_post``).
        compare: also run the exact sweep (``activation_patching``, as slow as it
            is) and report how well the estimate matches it in ``info``.
        max_batch: rows per forward of the exact sweep (``compare=True`` only).
        show_progress: show the exact sweep's progress bar (``compare=True`` only).

    Returns:
        A :class:`PatchingResult` with axes ``by`` and the labels of
        ``activation_patching``. ``info`` holds ``hook``, ``hook_names``,
        ``direction``, ``normalize``, ``layer``, ``clean_metric``,
        ``corrupt_metric`` (``[B]``, or ``[1]`` for a scalar metric), ``per_pair``
        (``[*axes, B]``; None for a scalar metric), ``method="attribution"`` and
        ``grad_hook_names`` (where the gradients were read); with ``compare=True``
        also ``exact`` (the exact ``PatchingResult``), ``rank_correlation`` (Spearman
        correlation of the two results' values, ties ranked by their mean rank; NaN
        if either is constant) and ``max_abs_error`` (the largest ``|estimate -
        exact|`` over the values).

    Raises:
        DTLensError: an unknown ``hook`` or ``by`` (the message lists the valid
            ones), a metric that is not differentiable, or ``normalize=True`` with a
            pair whose clean and corrupt metrics are equal.
        ConfigError: a bad ``direction``, ``normalize``, ``layer``, ``compare`` or
            ``max_batch``.
        BatchError: ``clean`` and ``corrupt`` windows differ in shape.

    Examples:
        >>> from tests.conftest import build_batch, build_model
        >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
        >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
        >>> result = attribution_patching(model, clean, corrupt, metric, "mlp_post",
        ...                               by=("neuron",), layer=1, direction="noise")
        >>> result.labels["neuron"][:3], result.info["grad_hook_names"]
        (['N0', 'N1', 'N2'], ['blocks.1.mlp.hook_post'])
    """
    call = check_sweep_call(model, clean, corrupt, hook, by, direction, normalize, layer)
    if not isinstance(compare, bool):
        raise ConfigError(f"compare must be True or False, got {compare!r}.")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be a positive int (rows per forward), got {max_batch!r}")
    hook_names = call.hook_names
    grad_names = [gradient_hook_name(hook, lay) for lay in call.layers]
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    base_metric, source_metric, base_acts, source_acts, grads = _runs(
        model, base, source, metric, hook_names, grad_names
    )
    clean_metric, corrupt_metric = (
        (source_metric, base_metric) if direction == "denoise" else (base_metric, source_metric)
    )

    # first-order change of every location: [layer, *sizes (axes order), B]
    change = torch.stack(
        [
            _location_sums(call.sweep, call.axes, (source_acts[name] - base_acts[name]) * grads[g])
            for name, g in zip(hook_names, grad_names, strict=True)
        ]
    )
    if len(base_metric) != clean.batch_size:  # a scalar metric: its change sums the pairs'
        change = change.sum(-1, keepdim=True)
    result = sweep_result(
        call, model, clean, base_metric + change, clean_metric, corrupt_metric, metric,
        method="attribution", grad_hook_names=grad_names,
    )  # fmt: skip
    if compare:
        exact = activation_patching(
            model, clean, corrupt, metric, hook, by, direction, normalize,
            layer=layer, max_batch=max_batch, show_progress=show_progress,
        )  # fmt: skip
        result.info["exact"] = exact
        result.info["rank_correlation"] = rank_correlation(result.values, exact.values)
        result.info["max_abs_error"] = float((result.values - exact.values).abs().max())
    return result


def gradient_hook_name(hook: str, layer: int | None) -> str:
    """The hook whose gradient is d metric / d (the activation a sweep of ``hook`` patches).

    The sweep's own hook, except ``resid_mid``: the patch replaces the residual stream
    between attention and MLP, ``resid_pre + attn_out``, whose gradient equals
    ``hook_attn_out``'s (read there, so that the same hooks serve ``attn_out``).

    Example:
        >>> gradient_hook_name("resid_mid", 1), gradient_hook_name("z", 0)
        ('blocks.1.hook_attn_out', 'blocks.0.attn.hook_z')
    """
    if hook not in SWEEPS:
        resolve_sweep(hook, ())  # raises, listing the valid hooks
    if hook == "resid_mid":
        return f"blocks.{layer}.hook_attn_out"
    return SWEEPS[hook].template.format(layer=layer)


def _runs(
    model: HookedDecisionTransformer,
    base: TrajectoryBatch,
    source: TrajectoryBatch,
    metric: MetricFn,
    hook_names: list[str],
    grad_names: list[str],
) -> tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """The source forward, the base forward and one backward.

    Returns the metric values of both runs (checked, ``[B]`` or ``[1]``), both runs'
    activations at ``hook_names`` and the gradients at ``grad_names`` on the base run.
    A zero tensor requiring grad is added at every gradient hook and the gradient is
    taken with respect to it (``torch.autograd.grad``): the graph reaches it whether
    or not the parameters require grad, and no parameter gets a ``.grad``.
    """
    n_pairs = base.batch_size
    source_acts: dict[str, Tensor] = {}
    base_acts: dict[str, Tensor] = {}
    leaves: dict[str, Tensor] = {}

    def record(store: dict[str, Tensor], name: str, act: Tensor, hook: object) -> None:
        store[name] = act.detach()

    def add_leaf(name: str, act: Tensor, hook: object) -> Tensor:
        leaves[name] = torch.zeros_like(act, requires_grad=True)
        return act + leaves[name]

    names = list(dict.fromkeys(hook_names))
    with torch.no_grad(), model.hooks([(n, partial(record, source_acts, n)) for n in names]):
        source_logits = model(source)
    source_metric = metric_values(metric, source_logits, n_pairs)
    hooks = [(n, partial(record, base_acts, n)) for n in names]
    hooks += [(n, partial(add_leaf, n)) for n in dict.fromkeys(grad_names)]
    with torch.enable_grad():
        with model.hooks(hooks):
            logits = model(base)
        out = metric(logits)
        base_metric = metric_values(lambda _: out, logits, n_pairs)
        if not out.requires_grad:
            raise DTLensError(
                "attribution patching needs a differentiable metric: its value has no "
                "gradient with respect to the logits (an argmax, a comparison, .detach() or "
                "torch.no_grad() inside it?). Use a logit difference or a probability, or "
                "run the exact activation_patching."
            )
        wrt = list(leaves)
        grads = torch.autograd.grad(out.sum(), [leaves[n] for n in wrt], allow_unused=True)
    zero = torch.zeros_like
    gradients = {n: zero(leaves[n]) if g is None else g for n, g in zip(wrt, grads, strict=True)}
    return base_metric, source_metric, base_acts, source_acts, gradients


def _location_sums(
    sweep: Sweep, axes: tuple[str, ...], terms: Float[Tensor, "batch ..."]
) -> Float[Tensor, "... batch"]:
    """``terms [B, *sweep.dims]`` summed over the dims not swept: ``[*sizes in axes order, B]``."""
    drop = [1 + i for i, d in enumerate(sweep.dims) if d not in axes]
    kept = [d for d in sweep.dims if d in axes]
    summed = terms.sum(dim=drop) if drop else terms
    return summed.permute(*[1 + kept.index(a) for a in axes], 0)


def rank_correlation(a: Float[Tensor, "..."], b: Float[Tensor, "..."]) -> float:
    """Spearman's rank correlation of two equally shaped tensors (flattened).

    Ties get the mean of their ranks (as ``scipy.stats.spearmanr``); NaN if either
    tensor is constant.

    Raises:
        DTLensError: the shapes differ or there are fewer than 2 values.

    Example:
        >>> rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0]))
        0.5
    """
    if a.shape != b.shape or a.numel() < 2:
        raise DTLensError(
            f"rank_correlation needs two tensors of the same shape with at least 2 values, "
            f"got {list(a.shape)} and {list(b.shape)}."
        )
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.square().sum() * rb.square().sum()).sqrt()
    if float(denominator) == 0.0:
        return float("nan")
    return float((ra * rb).sum() / denominator)


def _ranks(x: Tensor) -> Tensor:
    """Ranks 0..n-1 of ``x``'s flattened values, ties sharing their mean rank."""
    x = x.detach().flatten().double().cpu()
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    # a value's rank = how many values are smaller + (its copies - 1) / 2
    below = torch.cumsum(counts, 0) - counts
    return (below + (counts - 1) / 2).double()[inverse]
