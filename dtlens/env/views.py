"""Where the Memory task's instruction and targets are in an egocentric view.

:func:`locate_memory_objects` finds the instruction and target objects in egocentric
views (used by ``swap_instruction`` / ``flip_targets``). The view's object cells move
as the agent moves and turns, and the instruction can be picked up (a carried object
shows in the agent's cell ``[3, 6]``) and dropped elsewhere, while the targets never
move (standing next to one ends the episode). So the rule is: find the agent's pose
from the view's walls; key/ball cells on the targets' squares are the targets and every
other key/ball cell is the instruction. For each pose the agent can stand in, MiniGrid
renders the layout's view once (the walls are the same in all four layouts) with the
instruction removed; a view's poses are those whose wall/unseen cells match it
exactly. Poses with equal patterns exist (mirror images across the corridor) but all
of them agree on the targets' cells, so the rule is exact for every view the env can
produce, whatever route the agent took.

Examples:
    >>> from dtlens.analysis import layout_batch
    >>> obs = layout_batch("key/top-ball", n_steps=None).obs  # step 0: instruction on the left
    >>> instruction, targets = locate_memory_objects(obs)
    >>> instruction[0, 0].nonzero().tolist(), targets[0, 0].nonzero().tolist()
    ([[2, 6]], [[1, 2], [5, 2]])
"""

from __future__ import annotations

from functools import lru_cache

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dtlens.env.channels import N_CHANNELS, VIEW_SIZE, object_channel
from dtlens.errors import ObservationError

__all__ = ["check_views", "locate_memory_objects"]

Obs = Float[Tensor, "batch step x y channel"]
StepMask = Bool[Tensor, "batch step"]

_UNSEEN, _WALL = object_channel("unseen"), object_channel("wall")
_KEY, _BALL = object_channel("key"), object_channel("ball")


def locate_memory_objects(
    obs: Obs, real: StepMask | None = None
) -> tuple[Bool[Tensor, "batch step x y"], Bool[Tensor, "batch step x y"]]:
    """Masks of the view cells holding the Memory task's instruction and its targets.

    See the module docstring for the rule. Steps with ``real`` False, all-zero steps
    and steps whose view holds no key or ball get empty masks.

    Args:
        obs: one-hot views ``[batch, step, 7, 7, 20]`` from ``MiniGrid-MemoryS7FixedStart``.
        real: ``[batch, step]``, True at non-padding steps (default: all).

    Returns:
        ``(instruction, targets)``, each ``[batch, step, 7, 7]`` bool.

    Raises:
        ObservationError: if a view with a key or ball matches no agent pose of the
            layout, or its matching poses disagree on where the targets are.

    Examples:
        >>> from dtlens.analysis import layout_batch
        >>> obs = layout_batch("key/top-ball", n_steps=None).obs  # step 0: instruction on the left
        >>> instruction, targets = locate_memory_objects(obs)
        >>> instruction[0, 0].nonzero().tolist(), targets[0, 0].nonzero().tolist()
        ([[2, 6]], [[1, 2], [5, 2]])
    """
    check_views(obs)
    walls, targets = (t.to(obs.device) for t in _pose_templates())
    if real is None:
        real = torch.ones(obs.shape[:2], dtype=torch.bool, device=obs.device)
    key_ball = (obs[..., _KEY] != 0) | (obs[..., _BALL] != 0)
    active = real & obs.flatten(2).any(-1) & key_ball.flatten(2).any(-1)  # [batch, step]
    view = (obs[..., _WALL] != 0).long() - (obs[..., _UNSEEN] != 0).long()  # 1 wall, -1 unseen
    match = (view[active][:, None] == walls[None]).flatten(2).all(-1)  # [n, pose]
    target = torch.einsum("np,pxy->nxy", match.float(), targets.float())  # poses seeing one
    n_match = match.sum(-1).float()
    ambiguous = ((target > 0) & (target < n_match[:, None, None])).flatten(1).any(-1)
    bad = (n_match == 0) | ambiguous
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        b, t = (int(i) for i in active.nonzero()[first])
        why = "matches no agent pose" if n_match[first] == 0 else "is ambiguous"
        raise ObservationError(
            f"cannot locate the instruction/targets at batch row {b}, timestep {t}: its "
            f"view {why} in MiniGrid-MemoryS7FixedStart-v0's layout (its walls/unseen cells "
            "differ from every view the env can produce); edit such views with set_cell"
        )
    target_mask = torch.zeros_like(key_ball)
    target_mask[active] = target > 0
    target_mask &= key_ball
    return key_ball & ~target_mask & active[..., None, None], target_mask


@lru_cache(maxsize=1)
def _pose_templates() -> tuple[Tensor, Tensor]:
    """For every pose of the layout: the view's walls (1) / unseen cells (-1) and its
    target cells, rendered by MiniGrid (``[pose, 7, 7]`` long and bool)."""
    from dtlens.env.memory import MemoryS7FixedStartEnv

    env = MemoryS7FixedStartEnv()
    env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    env.grid.set(*env.instruction_pos, None)
    target_squares = {env.top_target_pos, env.bottom_target_pos}
    walls, targets = [], []
    for x in range(env.width):
        for y in range(env.height):
            cell = env.grid.get(x, y)
            if (cell is not None and cell.type == "wall") or (x, y) in target_squares:
                continue
            for direction in range(4):
                env.agent_pos, env.agent_dir = (x, y), direction
                objects = torch.as_tensor(env.gen_obs()["image"][..., 0]).long()
                walls.append((objects == _WALL).long() - (objects == _UNSEEN).long())
                targets.append((objects == _KEY) | (objects == _BALL))
    return torch.stack(walls), torch.stack(targets)


def check_views(obs: Tensor) -> None:
    """Raise ObservationError unless ``obs`` is ``[batch, step, 7, 7, 20]`` one-hot views.

    Example:
        >>> check_views(torch.zeros(1, 2, 7, 7, 20))  # None: the shape fits
    """
    if (
        not isinstance(obs, Tensor)
        or obs.ndim != 5
        or tuple(obs.shape[2:])
        != (
            VIEW_SIZE,
            VIEW_SIZE,
            N_CHANNELS,
        )
    ):
        shape = list(obs.shape) if isinstance(obs, Tensor) else type(obs).__name__
        raise ObservationError(
            f"observation edits need one-hot views [batch, step, {VIEW_SIZE}, {VIEW_SIZE}, "
            f"{N_CHANNELS}], got {shape}"
        )
