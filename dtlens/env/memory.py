"""``MiniGrid-MemoryS7FixedStart-v0``: MiniGrid's Memory task, size 7, fixed start.

Layout (x right, y down; ``#`` wall, ``I`` instruction object, ``A`` agent facing east,
``T``/``B`` the upper/lower target objects, ``+`` the squares whose entry ends the
episode)::

      x 0123456
    y 0 #######
      1 #####T#
      2 #I  #+#
      3 #A    #
      4 #   #+#
      5 #####B#
      6 #######

The agent always starts at (1, 3) facing east with the instruction object on its left.
It succeeds by walking onto the square next to the target that matches the
instruction, for reward ``1 - 0.9 * step_count / max_steps``; walking onto the square
next to the other target ends the episode with reward 0.

Examples:
    >>> import gymnasium, dtlens.env
    >>> env = gymnasium.make("MiniGrid-MemoryS7FixedStart-v0", max_steps=50)
    >>> obs, info = env.reset(seed=0, options={"instruction": "ball", "top": "key"})
    >>> info["scenario"], env.unwrapped.success_pos
    ('ball/top-key', (5, 4))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import DIR_TO_VEC
from minigrid.core.world_object import Ball, Key
from minigrid.envs.memory import MemoryEnv
from minigrid.minigrid_env import MiniGridEnv

from dtlens.env.scenarios import Scenario, parse_options
from dtlens.errors import EnvError

__all__ = ["MemoryS7FixedStartEnv", "optimal_actions"]

_OBJECT_CLASSES = {"key": Key, "ball": Ball}
_OBJECT_COLOUR = "green"


class MemoryS7FixedStartEnv(MemoryEnv):
    """MiniGrid's ``MemoryEnv`` with size 7, the agent fixed at (1, 3) facing east.

    Registered as ``MiniGrid-MemoryS7FixedStart-v0`` by ``import dtlens.env``. The
    instruction object and the upper target are drawn from the env's RNG (as in
    MiniGrid) unless forced with ``reset(options={"instruction": ..., "top": ...})``.
    After ``reset`` the scenario is on the env (``instruction``, ``top``, ``scenario``,
    ``success_pos``, ``failure_pos``) and in ``info`` (``"instruction"``, ``"top"``,
    ``"scenario"``: the scenario's name).

    Args:
        max_steps: Episode length after which the episode is truncated (default 50).
        pickup_as_toggle: If True, ``pickup`` is turned into ``toggle`` as MiniGrid's own
            MemoryEnv does. Default False, as in the original DecisionTransformer-
            Interpretability env that MemoryDT's training data came from: ``pickup``
            really picks up the instruction object when facing it.
        **kwargs: Passed on to ``MiniGridEnv`` (e.g. ``render_mode``).

    Raises:
        EnvError: If ``max_steps`` is not a positive integer, or (from
            ``reset``) for bad options.

    Examples:
        >>> env = MemoryS7FixedStartEnv(max_steps=20)
        >>> _, info = env.reset(seed=1, options={"instruction": "key", "top": "key"})
        >>> tuple(env.agent_pos), env.agent_dir, env.grid.get(1, 2).type
        ((1, 3), 0, 'key')
    """

    def __init__(self, max_steps: int = 50, pickup_as_toggle: bool = False, **kwargs: Any):
        if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer):
            raise EnvError(f"max_steps must be a positive int, got {max_steps!r}")
        if max_steps <= 0:
            raise EnvError(f"max_steps must be a positive int, got {max_steps!r}")
        self.pickup_as_toggle = bool(pickup_as_toggle)
        self.instruction: str | None = None
        self.top: str | None = None
        self._forced: dict[str, str] = {}
        super().__init__(size=7, random_length=False, max_steps=int(max_steps), **kwargs)

    # Layout, derived from MemoryEnv's geometry (hallway_end = width - 3).
    @property
    def start_pos(self) -> tuple[int, int]:
        """The agent's start square, (1, 3)."""
        return (1, self.height // 2)

    @property
    def instruction_pos(self) -> tuple[int, int]:
        """Where the instruction object lies, (1, 2): left of the agent at the start."""
        return (1, self.height // 2 - 1)

    @property
    def top_target_pos(self) -> tuple[int, int]:
        """The upper target object's square, (5, 1)."""
        return (self.width - 2, self.height // 2 - 2)

    @property
    def bottom_target_pos(self) -> tuple[int, int]:
        """The lower target object's square, (5, 5)."""
        return (self.width - 2, self.height // 2 + 2)

    @property
    def scenario(self) -> Scenario:
        """The current episode's :class:`Scenario` (only valid after ``reset``)."""
        if self.instruction is None or self.top is None:
            raise EnvError("the env has no scenario before the first reset()")
        return Scenario(self.instruction, self.top)

    def _gen_grid(self, width: int, height: int) -> None:
        # MemoryEnv draws (start x, instruction, target order) from the RNG; keep those
        # draws so that a seed gives the same facts with or without forcing the other one.
        super()._gen_grid(width, height)
        self.agent_pos = self.start_pos
        self.agent_dir = 0
        instruction = self._forced.get("instruction", self.grid.get(*self.instruction_pos).type)
        top = self._forced.get("top", self.grid.get(*self.top_target_pos).type)
        bottom = Scenario(instruction, top).bottom
        self.grid.set(*self.instruction_pos, _OBJECT_CLASSES[instruction](_OBJECT_COLOUR))
        self.grid.set(*self.top_target_pos, _OBJECT_CLASSES[top](_OBJECT_COLOUR))
        self.grid.set(*self.bottom_target_pos, _OBJECT_CLASSES[bottom](_OBJECT_COLOUR))
        below_top = (self.top_target_pos[0], self.top_target_pos[1] + 1)
        above_bottom = (self.bottom_target_pos[0], self.bottom_target_pos[1] - 1)
        if instruction == top:
            self.success_pos, self.failure_pos = below_top, above_bottom
        else:
            self.success_pos, self.failure_pos = above_bottom, below_top
        self.instruction, self.top = instruction, top

    def _info(self) -> dict[str, str]:
        return {"instruction": self.instruction, "top": self.top, "scenario": self.scenario.name}

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode, optionally forcing the scenario.

        Args:
            seed: Seeds the env's RNG (as in any gymnasium env).
            options: ``{"instruction": "key"|"ball", "top": "key"|"ball"}``; either key
                may be left out (or ``None``) to draw that fact from the RNG.

        Returns:
            ``(obs, info)``; ``info`` holds ``instruction``, ``top`` and ``scenario``.

        Raises:
            EnvError: For an unknown option or a bad value.

        Examples:
            >>> env = MemoryS7FixedStartEnv()
            >>> env.reset(seed=0, options={"top": "ball", "instruction": "ball"})[1]
            {'instruction': 'ball', 'top': 'ball', 'scenario': 'ball/top-ball'}
        """
        forced = parse_options(options)  # validate before touching any state
        self._forced = forced
        try:
            obs, info = super().reset(seed=seed, options=dict(options or {}))
        finally:
            self._forced = {}
        return obs, {**info, **self._info()}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Take one action; entering the square next to a target ends the episode.

        Returns:
            ``(obs, reward, terminated, truncated, info)``. ``reward`` is
            ``1 - 0.9 * step_count / max_steps`` on entering ``success_pos`` (with
            ``step_count`` counting this step), 0 otherwise. ``truncated`` is True once
            ``step_count`` reaches ``max_steps``.

        Examples:
            >>> env = MemoryS7FixedStartEnv(max_steps=50)
            >>> _ = env.reset(options={"instruction": "key", "top": "key"})
            >>> [env.step(a)[1:3] for a in optimal_actions("key", "key")][-1]
            (0.892, True)
        """
        if self.pickup_as_toggle and action == Actions.pickup:
            action = Actions.toggle
        # Skip MemoryEnv.step (it always maps pickup to toggle) and redo its end check.
        obs, reward, terminated, truncated, info = MiniGridEnv.step(self, action)
        pos = tuple(int(v) for v in self.agent_pos)
        if pos == self.success_pos:
            reward, terminated = self._reward(), True
        elif pos == self.failure_pos:
            reward, terminated = 0.0, True
        return obs, float(reward), terminated, truncated, {**info, **self._info()}


@lru_cache(maxsize=8)
def _shortest_path(instruction: str, top: str, to: str) -> tuple[Actions, ...]:
    env = MemoryS7FixedStartEnv()
    env.reset(seed=0, options={"instruction": instruction, "top": top})
    goal, avoid = (
        (env.success_pos, env.failure_pos) if to == "match" else (env.failure_pos, env.success_pos)
    )
    start = (tuple(int(v) for v in env.agent_pos), int(env.agent_dir))
    parents: dict[tuple, tuple | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        (x, y), d = state
        if (x, y) == goal:
            path = []
            while parents[state] is not None:
                state, action = parents[state]
                path.append(action)
            return tuple(reversed(path))
        dx, dy = (int(v) for v in DIR_TO_VEC[d])
        cell = env.grid.get(x + dx, y + dy)
        moves = [(Actions.left, ((x, y), (d - 1) % 4)), (Actions.right, ((x, y), (d + 1) % 4))]
        if (x + dx, y + dy) != avoid and (cell is None or cell.can_overlap()):
            moves.append((Actions.forward, ((x + dx, y + dy), d)))
        for action, nxt in moves:
            if nxt not in parents:
                parents[nxt] = (state, action)
                queue.append(nxt)
    raise EnvError(f"no path to the {to} target in scenario {instruction}/top-{top}")


def optimal_actions(instruction: str, top: str, *, to: str = "match") -> tuple[Actions, ...]:
    """Shortest action sequence from the start to the end of an episode.

    Found by breadth-first search over (square, direction) on the scenario's real
    grid, with actions left, right and forward; the square next to the other target
    counts as a wall. Every scenario's answer is 6 actions: 4 ``forward``, a turn
    towards the target (``left`` = up), 1 ``forward``.

    Args:
        instruction: ``"key"`` or ``"ball"``.
        top: The object type in the upper target position, ``"key"`` or ``"ball"``.
        to: ``"match"`` (default) for the rewarded target, ``"other"`` for the wrong one.

    Returns:
        The actions, as MiniGrid ``Actions`` (an ``IntEnum``: ``left=0, right=1,
        forward=2``).

    Raises:
        EnvError: For a bad ``instruction``, ``top`` or ``to``.

    Examples:
        >>> [a.name for a in optimal_actions("key", "ball")]
        ['forward', 'forward', 'forward', 'forward', 'right', 'forward']
        >>> [int(a) for a in optimal_actions("key", "ball", to="other")]
        [2, 2, 2, 2, 0, 2]
    """
    scenario = Scenario(instruction, top)  # validates
    if to not in ("match", "other"):
        raise EnvError(f"to must be 'match' or 'other', got {to!r}")
    return _shortest_path(scenario.instruction, scenario.top, to)
