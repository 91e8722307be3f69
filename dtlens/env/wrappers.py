"""A one-hot observation wrapper and :func:`make_env` for MiniGrid ids.

Examples:
    >>> env = make_env("MiniGrid-MemoryS7FixedStart-v0", max_steps=50, seed=0)
    >>> obs, info = env.reset()
    >>> obs["image"].shape, obs["image"].dtype, sorted(obs)
    ((7, 7, 20), dtype('float32'), ['direction', 'image', 'mission'])
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from minigrid.minigrid_env import MiniGridEnv

from dtlens.env.channels import N_CHANNELS, VIEW_SIZE
from dtlens.env.encoding import encode_observation
from dtlens.env.registration import MEMORY_ENV_ID, register_envs
from dtlens.errors import EnvError

__all__ = ["OneHotObservationWrapper", "make_env"]


class OneHotObservationWrapper(gymnasium.ObservationWrapper):
    """Replace a MiniGrid observation's ``image`` by its one-hot ``[7, 7, 20]`` float32.

    ``direction`` and ``mission`` (and any other entries) pass through unchanged. The
    encoding is :func:`dtlens.env.encoding.encode_observation` (same channel layout as
    ``minigrid.wrappers.OneHotPartialObsWrapper``, but float32 in ``[0, 1]``).

    Args:
        env: An env whose observation space is a Dict with a ``[7, 7, 3]`` ``image``.

    Raises:
        EnvError: If the env has no such ``image`` entry.

    Examples:
        >>> import gymnasium, dtlens.env
        >>> env = OneHotObservationWrapper(gymnasium.make("MiniGrid-DoorKey-6x6-v0"))
        >>> env.observation_space["image"].shape
        (7, 7, 20)
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        space = env.observation_space
        image = space.spaces.get("image") if isinstance(space, spaces.Dict) else None
        if image is None or tuple(image.shape) != (VIEW_SIZE, VIEW_SIZE, 3):
            raise EnvError(
                "OneHotObservationWrapper needs a Dict observation space with an 'image' of "
                f"shape ({VIEW_SIZE}, {VIEW_SIZE}, 3), got {space}"
            )
        onehot = spaces.Box(0.0, 1.0, (VIEW_SIZE, VIEW_SIZE, N_CHANNELS), np.float32)
        self.observation_space = spaces.Dict({**space.spaces, "image": onehot})

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Return ``observation`` with ``image`` one-hot encoded."""
        return {**observation, "image": encode_observation(observation["image"])}


def _check_env_id(env_id: str) -> None:
    if isinstance(env_id, str) and env_id in gymnasium.registry:
        return
    minigrid_ids = sorted(i for i in gymnasium.registry if i.startswith("MiniGrid-"))
    close = difflib.get_close_matches(str(env_id), minigrid_ids, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EnvError(
        f"unknown environment id {env_id!r}: expected a registered MiniGrid id such as "
        f"{MEMORY_ENV_ID!r}, 'MiniGrid-DoorKey-6x6-v0' or "
        f"'MiniGrid-Dynamic-Obstacles-8x8-v0'{hint}"
    )


def make_env(
    env_id: str,
    max_steps: int | None = None,
    one_hot: bool = True,
    seed: int | None = None,
    render_mode: str | None = None,
) -> gymnasium.Env:
    """Build a MiniGrid env (the Memory id or any other MiniGrid id), optionally one-hot.

    Args:
        env_id: A registered MiniGrid id, e.g. ``"MiniGrid-MemoryS7FixedStart-v0"``,
            ``"MiniGrid-DoorKey-6x6-v0"``, ``"MiniGrid-Dynamic-Obstacles-8x8-v0"``.
        max_steps: Episode length before truncation; ``None`` keeps the env's default
            (50 for the Memory id).
        one_hot: Wrap with :class:`OneHotObservationWrapper` (``image`` -> ``[7, 7, 20]``
            float32). With False the raw ``[7, 7, 3]`` uint8 indices are returned.
        seed: Seeds the env's RNG and action space now, so that a first ``reset()``
            without a seed gives the same episode as ``reset(seed=seed)``.
        render_mode: ``None``, ``"rgb_array"`` or ``"human"``.

    Returns:
        The (wrapped) gymnasium env, not yet reset.

    Raises:
        EnvError: For an unknown id, a non-MiniGrid id, or a bad ``max_steps``.

    Examples:
        >>> env = make_env("MiniGrid-Dynamic-Obstacles-8x8-v0", max_steps=30, seed=1)
        >>> env.reset()[0]["image"].shape, env.unwrapped.max_steps
        ((7, 7, 20), 30)
    """
    register_envs()
    _check_env_id(env_id)
    kwargs: dict[str, Any] = {}
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer):
            raise EnvError(f"max_steps must be a positive int or None, got {max_steps!r}")
        if max_steps <= 0:
            raise EnvError(f"max_steps must be a positive int or None, got {max_steps!r}")
        kwargs["max_steps"] = int(max_steps)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = gymnasium.make(env_id, **kwargs)
    if not isinstance(env.unwrapped, MiniGridEnv):
        env.close()
        raise EnvError(
            f"environment id {env_id!r} is not a MiniGrid env "
            f"({type(env.unwrapped).__name__}); dtlens supports MiniGrid ids only"
        )
    if seed is not None:
        env.unwrapped.np_random, _ = seeding.np_random(seed)
        env.action_space.seed(seed)
    return OneHotObservationWrapper(env) if one_hot else env
