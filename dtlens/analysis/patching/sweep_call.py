"""The two ends activation and attribution patching share: the checked call, the result.

Both sweep the same locations (:mod:`dtlens.analysis.patching.sweeps`) and differ only in
how a location's patched metric is obtained (exactly, by batched forwards; or to first
order, from one backward). :func:`check_sweep_call` validates the arguments they share
and resolves the sweep; :func:`sweep_result` turns the per-pair patched metrics of every
layer into the :class:`~dtlens.analysis.patching.results.PatchingResult` both return
(restored fraction, axes in the order asked for, labels, ``info``).

Example:
    >>> call = check_sweep_call(model, clean, corrupt, "z", ("layer", "head"), "noise", True)
    >>> call.axes, call.hook_names
    (('head',), ['blocks.0.attn.hook_z', 'blocks.1.attn.hook_z'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.metrics import MetricFn, metric_name, restored_fraction
from dtlens.analysis.patching.engine import check_pair
from dtlens.analysis.patching.results import PatchingResult
from dtlens.analysis.patching.sweeps import Sweep, resolve_sweep, sweep_labels, sweep_layers
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["SweepCall", "check_sweep_call", "sweep_result"]


@dataclass(frozen=True)
class SweepCall:
    """A checked patching call: what to sweep and how to report it.

    Attributes:
        hook: the swept activation (a key of ``PATCHING_SWEEPS``).
        by: the sweep axes as asked for (the result's axes, in this order).
        sweep: the table entry of ``hook``.
        axes: the axes inside one layer's activation (``by`` without ``"layer"``, in
            the activation's dimension order).
        layers: the layers swept (``[None]`` for an embedding hook).
        direction: ``"denoise"`` or ``"noise"``.
        normalize: report the restored fraction (True) or the raw metric.
        layer: the ``layer`` argument (a ``mlp_post`` neuron sweep's layer), as given.
    """

    hook: str
    by: tuple[str, ...]
    sweep: Sweep
    axes: tuple[str, ...]
    layers: list[int | None]
    direction: Literal["denoise", "noise"]
    normalize: bool
    layer: int | None

    @property
    def hook_names(self) -> list[str]:
        """The hook name of every swept layer."""
        return [self.sweep.template.format(layer=lay) for lay in self.layers]


def check_sweep_call(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    hook: str,
    by: tuple[str, ...],
    direction: str,
    normalize: bool,
    layer: int | None = None,
) -> SweepCall:
    """Check the arguments every patching sweep takes; resolve what it sweeps.

    Raises:
        DTLensError: an unknown ``hook`` or ``by`` (the message lists the valid ones).
        ConfigError: a bad ``direction``, ``normalize`` or ``layer``.
        BatchError: ``clean`` and ``corrupt`` windows differ in shape.
    """
    sweep, axes = resolve_sweep(hook, by)
    if direction not in ("denoise", "noise"):
        raise ConfigError(f"direction must be 'denoise' or 'noise', got {direction!r}.")
    if not isinstance(normalize, bool):
        raise ConfigError(f"normalize must be True or False, got {normalize!r}.")
    layers = sweep_layers(model, hook, sweep, axes, layer)
    check_pair(clean, corrupt)
    return SweepCall(hook, tuple(by), sweep, axes, layers, direction, normalize, layer)  # type: ignore[arg-type]


def sweep_result(
    call: SweepCall,
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    patched: Float[Tensor, "layer *location m"],
    clean_metric: Float[Tensor, " m"],
    corrupt_metric: Float[Tensor, " m"],
    metric: MetricFn,
    **info: Any,
) -> PatchingResult:
    """The :class:`PatchingResult` of a sweep from its patched metrics.

    Args:
        call: the checked call.
        model: the model (for the labels).
        clean: the clean windows (for the position labels).
        patched: the patched metric of every location, ``[layer, *sizes, m]`` (sizes in
            ``call.axes`` order; ``m`` = the pairs, or 1 for a scalar metric).
        clean_metric: the clean runs' metric ``[m]``.
        corrupt_metric: the corrupt runs' metric ``[m]``.
        metric: the metric (for the result's ``metric_name``).
        **info: more entries for ``info`` (after the shared ones).

    Raises:
        DTLensError: ``normalize=True`` with a pair whose clean and corrupt metrics are equal.
    """
    sizes = list(patched.shape[1:-1])
    canonical = (("layer",) if "layer" in call.by else ()) + call.axes
    lead = [len(call.layers)] if "layer" in call.by else []
    per_pair = patched.reshape(*lead, *sizes, len(clean_metric))
    if call.normalize:
        per_pair = restored_fraction(per_pair, clean_metric, corrupt_metric)
    per_pair = per_pair.permute(*[canonical.index(a) for a in call.by], -1)
    labels = sweep_labels(
        model, clean, call.sweep, dict(zip(call.axes, sizes, strict=True)), len(call.layers)
    )
    return PatchingResult(
        values=per_pair.mean(-1),
        axes=call.by,
        labels={a: labels[a] for a in call.by},
        metric_name=metric_name(metric, call.normalize),
        info={
            "hook": call.hook,
            "hook_names": call.hook_names,
            "direction": call.direction,
            "normalize": call.normalize,
            "layer": call.layer,
            "clean_metric": clean_metric,
            "corrupt_metric": corrupt_metric,
            "per_pair": per_pair if len(clean_metric) == clean.batch_size else None,
            **info,
        },
    )
