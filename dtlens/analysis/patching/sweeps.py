"""The sweep table shared by activation and attribution patching: hook -> locations, axes, labels.

One entry of :data:`SWEEPS` says how to sweep one kind of activation: the hook name
(``{layer}`` for hooks inside blocks), the names of its dimensions after the batch
dimension, the valid sets of sweep axes (``by``) and, for the DT embedding hooks, the
label prefix of their timestep axis. The helpers resolve a ``(hook, by)`` request
(:func:`resolve_sweep`), the layers it covers (:func:`sweep_layers`), one boolean mask
per swept location (:func:`location_masks`) and the axis labels
(:func:`sweep_labels`). :func:`~dtlens.analysis.patching.activation.activation_patching`
runs the sweeps exactly; :func:`~dtlens.analysis.patching.attribution.attribution_patching`
estimates them, over the same locations.

The table of valid ``hook`` / ``by`` pairs, for users, is in
:mod:`dtlens.analysis.patching.activation`.

Examples:
    >>> sweep, axes = resolve_sweep("z", ("head", "layer"))
    >>> sweep.template, sweep.dims, axes
    ('blocks.{layer}.attn.hook_z', ('pos', 'head', 'd_head'), ('head',))
    >>> import torch
    >>> masks = location_masks(torch.arange(4), sweep.dims, axes, [4])  # one head each
    >>> tuple(masks.shape), masks[2].flatten().tolist()
    ((4, 1, 4, 1), [False, False, True, False])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from dtlens.errors import ConfigError, DTLensError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "PATCHING_SWEEPS",
    "SWEEPS",
    "Sweep",
    "location_masks",
    "resolve_sweep",
    "sweep_labels",
    "sweep_layers",
]


@dataclass(frozen=True)
class Sweep:
    """How to patch one kind of activation.

    Attributes:
        template: the hook name, with ``{layer}`` for hooks inside blocks.
        dims: names of the activation's dimensions after the batch dimension.
        bys: the valid sets of sweep axes, each in canonical order.
        pos_prefix: label prefix of an embedding hook's timestep axis ("R", "S" ...),
            or None for token positions.
    """

    template: str
    dims: tuple[str, ...]
    bys: tuple[tuple[str, ...], ...]
    pos_prefix: str | None = None

    @property
    def per_layer(self) -> bool:
        """Whether the hook sits inside the blocks (one per layer)."""
        return "{layer}" in self.template


_RESID = (("layer", "pos"),)
_HEAD = (("layer", "head"), ("layer", "head", "pos"))

#: Every sweep: the short hook name -> how to patch it.
SWEEPS: dict[str, Sweep] = {
    "resid_pre": Sweep("blocks.{layer}.hook_resid_pre", ("pos", "d_model"), _RESID),
    "resid_mid": Sweep("blocks.{layer}.hook_resid_mid", ("pos", "d_model"), _RESID),
    "resid_post": Sweep("blocks.{layer}.hook_resid_post", ("pos", "d_model"), _RESID),
    "attn_out": Sweep("blocks.{layer}.hook_attn_out", ("pos", "d_model"), _RESID),
    "mlp_out": Sweep("blocks.{layer}.hook_mlp_out", ("pos", "d_model"), _RESID),
    "z": Sweep("blocks.{layer}.attn.hook_z", ("pos", "head", "d_head"), _HEAD),
    "q": Sweep("blocks.{layer}.attn.hook_q", ("pos", "head", "d_head"), _HEAD),
    "k": Sweep("blocks.{layer}.attn.hook_k", ("pos", "head", "d_head"), _HEAD),
    "v": Sweep("blocks.{layer}.attn.hook_v", ("pos", "head", "d_head"), _HEAD),
    "pattern": Sweep("blocks.{layer}.attn.hook_pattern", ("head", "pos", "key_pos"), _HEAD),
    "mlp_post": Sweep(
        "blocks.{layer}.mlp.hook_post", ("pos", "neuron"), (("neuron",), ("neuron", "pos"))
    ),
    "rtg_embed": Sweep("hook_rtg_embed", ("pos", "d_model"), (("pos",),), "R"),
    "state_embed": Sweep("hook_state_embed", ("pos", "d_model"), (("pos",),), "S"),
    "action_embed": Sweep("hook_action_embed", ("pos", "d_model"), (("pos",),), "A"),
    "time_embed": Sweep("hook_time_embed", ("pos", "d_model"), (("pos",),), "t"),
}

#: Every sweep :func:`~dtlens.analysis.patching.activation.activation_patching` runs:
#: hook -> the valid ``by`` axes.
PATCHING_SWEEPS: dict[str, tuple[tuple[str, ...], ...]] = {k: s.bys for k, s in SWEEPS.items()}


def resolve_sweep(hook: str, by: tuple[str, ...]) -> tuple[Sweep, tuple[str, ...]]:
    """The sweep of ``hook`` and its non-layer axes in canonical order; raise if invalid.

    Raises:
        DTLensError: an unknown ``hook``, ``by`` given as a string, or axes that
            ``hook`` cannot be swept by (the message lists the valid ones).

    Example:
        >>> resolve_sweep("pattern", ("pos", "layer", "head"))[1]
        ('head', 'pos')
    """
    if hook not in SWEEPS:
        raise DTLensError(
            f"unknown patching hook {hook!r}; valid hooks and their 'by' axes: "
            f"{_describe(PATCHING_SWEEPS)}."
        )
    sweep = SWEEPS[hook]
    if isinstance(by, str):
        raise DTLensError(
            f"by must be a tuple of axis names, e.g. ('pos',), got the string {by!r}."
        )
    by = tuple(by)
    for valid in sweep.bys:
        if len(by) == len(valid) and set(by) == set(valid):
            return sweep, tuple(a for a in valid if a != "layer")
    raise DTLensError(
        f"hook {hook!r} cannot be swept by {by}; valid: {_describe({hook: sweep.bys})} "
        "(axes in any order)."
    )


def _describe(sweeps: dict[str, tuple[tuple[str, ...], ...]]) -> str:
    return "; ".join(f"{h}: {' or '.join(map(str, bys))}" for h, bys in sweeps.items())


def sweep_layers(
    model: HookedDecisionTransformer,
    hook: str,
    sweep: Sweep,
    axes: tuple[str, ...],
    layer: int | None,
) -> list[int | None]:
    """The layers a sweep covers: all, the one ``layer=`` names, or [None] (embeddings).

    Raises:
        ConfigError: ``layer=`` given to a sweep over all layers, or missing / out of
            range for the one-layer ``mlp_post`` sweep.
    """
    n_layers = model.cfg.n_layers
    if not sweep.per_layer or "layer" in sweep.bys[0]:
        if layer is not None:
            raise ConfigError(
                f"layer= applies only to the one-layer 'mlp_post' sweep, not to {hook!r} "
                f"(got layer={layer})."
            )
        return list(range(n_layers)) if sweep.per_layer else [None]
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ConfigError(
            f"a {hook!r} sweep by {axes} patches one layer: pass layer= an int in "
            f"0..{n_layers - 1}, got {layer!r}."
        )
    return [layer]


def location_masks(
    patches: Int[Tensor, " row"],
    dims: tuple[str, ...],
    axes: tuple[str, ...],
    sizes: list[int],
) -> Bool[Tensor, "row ..."]:
    """Row r's mask marks the location ``unravel(patches[r], sizes)`` along ``axes``.

    The mask has the activation's dims (size 1 where not swept), so it broadcasts.
    Locations are numbered C-order over ``axes`` (the last axis varies fastest).
    """
    n_rows = len(patches)
    mask = torch.ones((n_rows,) + (1,) * len(dims), dtype=torch.bool, device=patches.device)
    rest = patches
    for axis, size in reversed(list(zip(axes, sizes, strict=True))):
        index, rest = rest % size, rest // size
        shape = [n_rows] + [1] * len(dims)
        shape[1 + dims.index(axis)] = size
        hot = torch.arange(size, device=patches.device) == index[:, None]
        mask = mask & hot.view(shape)
    return mask


def sweep_labels(
    model: HookedDecisionTransformer,
    batch: TrajectoryBatch,
    sweep: Sweep,
    sizes: dict[str, int],
    n_layers: int,
) -> dict[str, list[str]]:
    """The labels of every axis a sweep can have: layers, positions, heads, neurons.

    Token positions are ``model.token_labels(batch)``; an embedding hook's timesteps
    ``R1..``, ``S1..``, ``A1..``, ``t1..``; heads ``H0..``; neurons ``N0..``.
    """
    labels = {"layer": [str(i) for i in range(n_layers)]}
    if "pos" in sizes:
        if sweep.pos_prefix is None:
            labels["pos"] = model.token_labels(batch)
        else:
            labels["pos"] = [f"{sweep.pos_prefix}{t + 1}" for t in range(sizes["pos"])]
    if "head" in sizes:
        labels["head"] = [f"H{h}" for h in range(sizes["head"])]
    if "neuron" in sizes:
        labels["neuron"] = [f"N{n}" for n in range(sizes["neuron"])]
    return labels
