"""How a patch group is split into batched forwards (chunks), for :mod:`patch_sweeps`.

Plain chunks are consecutive ranges of at most ``per_chunk`` patches. Residual-stream
patches (:class:`~dtlens.analysis.patching.engine.ResidPatch`) change nothing before the
first token position they write, so given the window length they are sorted by that
position and each chunk records where its recomputation may start (see
:func:`dtlens.model.suffix.forward_suffix`).

Examples:
    >>> import torch
    >>> from dtlens.analysis.patching.groups import PatchGroup, ResidPatch
    >>> act = torch.zeros(16, 26, 8)  # 16 pairs x 26 positions x d_model 8
    >>> writes_at = lambda idx: torch.eye(26, dtype=torch.bool)[(25 - idx) % 26, :, None]
    >>> group = PatchGroup(52, writes_at, ResidPatch(0, "pre", act, act, lambda a, pair: a))
    >>> chunks = plan_chunks(group, n_pairs=16, per_chunk=64, n_pos=26)  # 26 positions
    >>> firsts = [c.first_pos for c in chunks]
    >>> firsts == sorted(firsts), firsts[0], firsts[-1]
    (True, 0, 25)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from dtlens.analysis.patching.groups import PatchGroup

__all__ = ["SUFFIX_MIN_ROWS", "Chunk", "plan_chunks"]

#: A position-sorted chunk of residual patches closes at a new first position once it
#: has this many rows. A 26-token window is compute-bound from a few rows on, so small
#: chunks cost little; 8 beat 16, 32 and 64 in benchmarks/bench_activation_patching.py.
SUFFIX_MIN_ROWS = 8
#: Patches whose masks are built at once when finding their first positions.
_MASK_BLOCK = 1024


@dataclass(frozen=True)
class Chunk:
    """Patches run in one forward; ``first_pos``: recompute positions from here (None: all)."""

    patches: Int[Tensor, " patch"]
    first_pos: int | None


def plan_chunks(group: PatchGroup, n_pairs: int, per_chunk: int, n_pos: int | None) -> list[Chunk]:
    """Split a group's patches into forwards of at most ``per_chunk`` patches.

    Pass the window's ``n_pos`` only for a group of residual-stream patches (they
    change nothing before the first position their mask writes; the mask's dimension
    after the patch index is the token position): its patches are then sorted by that
    position and each chunk's ``first_pos`` says where recomputing may start
    (:func:`dtlens.model.suffix.forward_suffix`). A chunk is closed at a new first
    position once it holds :data:`SUFFIX_MIN_ROWS` rows, so forwards stay large
    enough to be efficient. With ``n_pos=None`` chunks are consecutive patch ranges
    (``first_pos`` None).

    Examples:
        >>> import torch
        >>> from dtlens.analysis.patching.groups import HookPatch, PatchGroup
        >>> every = lambda idx: torch.ones(len(idx), 1, 1, dtype=torch.bool)
        >>> patch = HookPatch("blocks.0.hook_resid_pre", 0, torch.zeros(1, 4, 8))
        >>> five = PatchGroup(5, every, patch)
        >>> [c.patches.tolist() for c in plan_chunks(five, 1, 2, None)]
        [[0, 1], [2, 3], [4]]
    """
    device = group.patch.source.device
    if n_pos is None:
        return [
            Chunk(torch.arange(first, min(group.n_patches, first + per_chunk), device=device), None)
            for first in range(0, group.n_patches, per_chunk)
        ]
    first = _first_positions(group, n_pos, device)
    order = torch.argsort(first, stable=True).tolist()
    first_of = first.tolist()
    chunks, current = [], []
    for patch in order:
        full = len(current) >= per_chunk
        enough = (
            len(current) * n_pairs >= SUFFIX_MIN_ROWS and first_of[patch] != first_of[current[-1]]
        )
        if current and (full or enough):
            chunks.append(current)
            current = []
        current.append(patch)
    if current:
        chunks.append(current)
    return [Chunk(torch.tensor(c, device=device), first_of[c[0]]) for c in chunks]


def _first_positions(group: PatchGroup, n_pos: int, device: torch.device) -> Int[Tensor, " patch"]:
    """The first token position each patch writes (``n_pos`` if it writes nowhere).

    A ResidPatch activation has the token position as its first dimension after the
    batch; a mask of size 1 there writes every position.
    """
    firsts = []
    for start in range(0, group.n_patches, _MASK_BLOCK):
        patches = torch.arange(start, min(group.n_patches, start + _MASK_BLOCK), device=device)
        masks = group.masks(patches)
        by_pos = masks.reshape(len(patches), masks.shape[1], -1).any(-1)
        position = torch.arange(by_pos.shape[1], device=device)
        firsts.append(torch.where(by_pos, position, n_pos).amin(-1))
    return torch.cat(firsts) if firsts else torch.zeros(0, dtype=torch.long, device=device)
