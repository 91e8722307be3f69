"""The decision square: the steps of Memory demonstrations where the agent must remember.

Background:
    In ``MiniGrid-MemoryS7FixedStart-v0`` the agent walks east along the corridor to its
    end, (5, 3), and turns up or down towards the target that matches the instruction.
    That turn is an XOR of the instruction (shown only in the first observation) and
    the target order (visible at the decision square), so a decision transformer can
    only take it right by attending back to the first state. On the memory plateau the
    loss of this one action sits at ln 2 = 0.693 while every other action is learned;
    it is the first measure to move when the plateau breaks.

    The agent's egocentric view at (5, 3) facing east shows both targets and never the
    instruction object, so it is one of two images (one per target order):
    :func:`decision_views` renders them from the env and :func:`decision_steps` finds
    the demonstration steps whose observation equals one of them.

Example:
    >>> import numpy as np
    >>> views = decision_views()
    >>> sorted(views), views["key"].shape
    (['ball', 'key'], (7, 7, 3))
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dtlens.data.demonstrations import Demonstrations

__all__ = ["decision_steps", "decision_views", "episode_instructions", "start_views"]

_CORRIDOR_STEPS = 4  # forward moves from the start to the decision square


def _view(options: dict[str, str], forward_steps: int) -> np.ndarray:
    """The raw view after ``forward_steps`` forward moves from the start of a layout."""
    import gymnasium

    import dtlens.env  # noqa: F401  (registers the env)
    from dtlens.env import MEMORY_ENV_ID

    env = gymnasium.make(MEMORY_ENV_ID, max_steps=50)
    obs, _ = env.reset(seed=0, options=options)
    for _ in range(forward_steps):
        obs, *_ = env.step(2)  # forward
    env.close()
    return np.array(obs["image"], dtype=np.uint8)


@lru_cache(maxsize=1)
def _views() -> tuple[tuple[str, np.ndarray], ...]:
    return tuple(
        (top, _view({"instruction": "key", "top": top}, _CORRIDOR_STEPS)) for top in ("key", "ball")
    )


@lru_cache(maxsize=1)
def _start_views() -> tuple[tuple[str, str, np.ndarray], ...]:
    from dtlens.env import SCENARIOS

    return tuple((s.instruction, s.top, _view(s.options, 0)) for s in SCENARIOS)


def start_views() -> dict[tuple[str, str], np.ndarray]:
    """The raw first view of each layout, by ``(instruction, top)``.

    Example:
        >>> len({v.tobytes() for v in start_views().values()})
        4
    """
    return {(i, t): view.copy() for i, t, view in _start_views()}


def episode_instructions(demos: Demonstrations) -> np.ndarray:
    """``[E]`` each episode's instruction, read from its first observation: 0 key, 1 ball.

    Raises:
        EnvError: an episode's first observation is not a Memory start view.

    Example:
        >>> episode_instructions(demos)[:4]  # doctest: +SKIP
        array([1, 0, 0, 1])
    """
    from dtlens.errors import EnvError

    first = demos.obs[demos.episode_starts].reshape(demos.n_episodes, -1)
    out = np.full(demos.n_episodes, -1, dtype=np.int64)
    for instruction, _, view in _start_views():
        out[(first == view.reshape(1, -1)).all(axis=1)] = 0 if instruction == "key" else 1
    if (out < 0).any():
        bad = int(np.flatnonzero(out < 0)[0])
        raise EnvError(
            f"episode {bad}'s first observation is not a start view of "
            "MiniGrid-MemoryS7FixedStart-v0; are these Memory demonstrations?"
        )
    return out


def decision_views() -> dict[str, np.ndarray]:
    """The raw ``[7, 7, 3]`` view at the decision square facing east, by the upper target.

    Example:
        >>> v = decision_views()
        >>> bool((v["key"] != v["ball"]).any())
        True
    """
    return {top: view.copy() for top, view in _views()}


def decision_steps(
    demos: Demonstrations,
    episode_indices: np.ndarray | None = None,
    max_timestep: int | None = None,
) -> np.ndarray:
    """Global step indices where the agent stands on the decision square facing east.

    Args:
        demos: Memory demonstrations.
        episode_indices: only steps of these episodes (default: all).
        max_timestep: only steps with ``timestep <= max_timestep``; pass
            ``n_steps - 1`` to keep the steps whose window still holds the first
            observation (the only one that shows the instruction).

    Returns:
        Sorted int64 step indices (into ``demos.actions`` etc.).

    Example:
        >>> steps = decision_steps(demos, max_timestep=8)  # doctest: +SKIP
        >>> demos.actions[steps[:4]]  # doctest: +SKIP
        array([1, 0, 0, 1])
    """
    obs = demos.obs.reshape(demos.n_steps, -1)
    hit = np.zeros(demos.n_steps, dtype=bool)
    for _, view in _views():
        hit |= (obs == view.reshape(1, -1)).all(axis=1)
    if max_timestep is not None:
        hit &= demos.timesteps <= max_timestep
    if episode_indices is not None:
        episode_of_step = np.repeat(np.arange(demos.n_episodes), demos.episode_lengths)
        hit &= np.isin(episode_of_step, np.asarray(episode_indices).reshape(-1))
    return np.flatnonzero(hit).astype(np.int64)
