"""The patches a batched sweep runs: where an activation is replaced, and from where.

A :class:`PatchGroup` describes ``n_patches`` patches of one activation without
materialising them: a mask function (which locations patch ``k`` writes) and one
:class:`HookPatch` or :class:`ResidPatch` (how the activation is replaced and where the
patched run can start). :mod:`dtlens.analysis.patching.engine` runs groups;
:mod:`dtlens.analysis.patching.chunks` splits them into forwards.

Example:
    >>> import torch
    >>> source = torch.zeros(2, 11, 8)  # [batch, pos, d_model]
    >>> every = lambda idx: torch.ones(len(idx), 1, 1, dtype=torch.bool)
    >>> group = PatchGroup(1, every, HookPatch("blocks.1.hook_resid_pre", 1, source))
    >>> group.masks(torch.arange(1)).shape
    torch.Size([1, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["HookPatch", "MaskFn", "PatchGroup", "ResidPatch"]

#: ``patch indices [R] -> Bool [R, *mask_shape]``: True where a row's patch writes.
MaskFn = Callable[[Int[Tensor, " row"]], Bool[Tensor, "row ..."]]


@dataclass(frozen=True)
class HookPatch:
    """Patch with a hook where the activation fires.

    Args:
        hook_name: the full hook name, e.g. ``"blocks.1.attn.hook_q"``.
        start_layer: block whose cached ``hook_resid_pre`` the run starts from, or
            None to rerun the whole model (hooks outside the blocks).
        source: the replacement activation of every pair, ``[B, *act_shape]``.
    """

    hook_name: str
    start_layer: int | None
    source: Float[Tensor, "batch ..."]


@dataclass(frozen=True)
class ResidPatch:
    """Patch an activation that fixes the residual stream at a later point; start there.

    Args:
        layer: the block to start at.
        point: ``"pre"`` (start block ``layer`` from its input) or ``"mid"`` (start
            at block ``layer``'s MLP, after its attention).
        source: the replacement activation of every pair, ``[B, *act_shape]``.
        base: the base run's own activation, ``[B, *act_shape]``.
        to_resid: ``(patched activation [R, *act_shape], pair index [R]) ->
            residual stream [R, pos, d_model]`` at the start point.
    """

    layer: int
    point: Literal["pre", "mid"]
    source: Float[Tensor, "batch ..."]
    base: Float[Tensor, "batch ..."]
    to_resid: Callable[[Tensor, Tensor], Float[Tensor, "row pos d_model"]]


@dataclass(frozen=True)
class PatchGroup:
    """``n_patches`` patches of one activation, described without materialising them.

    Args:
        n_patches: how many patches the group holds.
        masks: ``patch indices [R] -> Bool [R, *mask_shape]``, True where patch n
            writes; ``mask_shape`` broadcasts against the activation without its
            batch dimension.
        patch: how the activation is patched and where the run starts.
    """

    n_patches: int
    masks: MaskFn
    patch: HookPatch | ResidPatch
