"""A Boltzmann-rational planner for the Memory task, with exact optimal Q-values.

Background:
    MemoryDT was trained on demonstrations of a PPO LSTM agent sampled at temperatures
    1 and 5. :class:`BoltzmannPlanner` is a clean stand-in for that agent whose policy
    is known exactly: its logits are the optimal Q-values of the seven actions, in units
    of one step's reward, so ``softmax(logits / T)`` at ``T = 1`` makes an action that
    wastes one step ``e`` times less likely than the best one, and ``T = 0`` (greedy)
    plays optimally.

Model of the task (exact for MiniGrid's Memory envs):
    - The planner knows the map (walls, the two target squares, where the instruction
      object lies): it reads them from ``env.unwrapped.grid``, as a trained agent with
      perfect knowledge of the layout would. It must *see* the instruction: it looks
      for the instruction object in the observed image (the agent's view) and remembers
      its type in its state until the episode ends.
    - Dynamics are MiniGrid's, over (agent square, direction, where the instruction
      object is: a square or carried): ``left``/``right`` turn, ``forward`` moves
      unless a wall or object is in front, ``pickup`` picks up the instruction object
      when facing it and carrying nothing (unless the env maps pickup to toggle, as
      MiniGrid's own ``MemoryEnv`` does), ``drop`` puts a carried object on the empty
      square in front (where it blocks the way until picked up again), ``toggle`` and
      ``done`` do nothing. Walking onto the square next to a target ends the episode.
      The targets cannot be picked up (the only square facing one ends the episode).
    - Reward ``1 - 0.9 * n / max_steps`` on reaching the square next to the matching
      target at step ``n``; 0 at the other target and at truncation. Hence the exact
      optimal Q-value of action ``a`` after ``k`` steps is
      ``1 - 0.9 * (k + 1 + D(s')) / max_steps`` where ``s'`` is the state ``a`` leads to
      and ``D`` the shortest number of steps from there to the matching target, or 0
      if ``a`` enters the wrong target or the target cannot be reached in time.
      ``D`` is found by breadth-first search backwards from the targets, once per
      layout (cached), so acting is table look-ups.
    - Before the instruction is seen, both instructions are taken as equally likely
      and the logits are the expected Q-value ``(Q_key + Q_ball) / 2`` (the value of
      committing to a plan now; the value of looking first is not credited). In
      ``MiniGrid-MemoryS7FixedStart-v0`` the instruction is in view from the first
      step, so this only matters for other Memory layouts or hidden observations.

Logits are ``Q / (0.9 / max_steps)``: an episode that succeeds after ``n`` steps has
logit ``max_steps / 0.9 - n``; one that cannot succeed has 0.

Examples:
    >>> import torch, dtlens.env
    >>> from dtlens.env import make_env
    >>> env = make_env("MiniGrid-MemoryS7FixedStart-v0", max_steps=50, one_hot=False)
    >>> obs, _ = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    >>> planner = BoltzmannPlanner([env])
    >>> logits, state = planner.act(torch.as_tensor(obs["image"])[None], planner.initial_state(1))
    >>> (50 / 0.9 - logits[0]).round().tolist()  # steps to success after each action
    [8.0, 8.0, 6.0, 7.0, 7.0, 7.0, 7.0]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from minigrid.core.actions import Actions
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.envs.memory import MemoryEnv

from dtlens.errors import ConfigError, EnvError, ObservationError

__all__ = ["BoltzmannPlanner"]

_N_ACTIONS = len(Actions)
_CARRIED = -1  # object location code: in the agent's hands
_UNSEEN = -1  # memory code: instruction not seen yet
_INSTRUCTION_TYPES = ("key", "ball")
_TYPE_INDEX = {name: OBJECT_TO_IDX[name] for name in _INSTRUCTION_TYPES}
_TERMINAL_CODES = (-1, -2)  # next-state codes: entered terminal square 0 / 1
_AGENT_VIEW_CELL = (3, 6)  # where the agent (and what it carries) sits in its view


@dataclass(frozen=True, eq=False)
class _Layout:
    """Precomputed dynamics and distances of one Memory layout."""

    index: dict[tuple[int, int, int, int], int]  # (x, y, dir, object cell or -1) -> state
    cells: list[tuple[int, int]]  # cell id -> (x, y), for object locations
    next_state: np.ndarray  # int64 [S, 7]: next state, or -1 / -2 = terminal square 0 / 1
    cost: dict[str, np.ndarray]  # instruction type -> float [S, 7] steps to success (inf)
    success_code: dict[str, int]  # instruction type -> terminal code of its target
    max_steps: int


class BoltzmannPlanner:
    """Exact optimal Q-values of the Memory task as logits, for a batch of envs.

    Implements the :class:`dtlens.data.agents.base.Agent` protocol. Because it reads
    the map from the envs it plays, it must be attached to them (``BoltzmannPlanner(envs)``
    or :meth:`attach`); row ``i`` of every ``act`` call is ``envs[i]``. Sample actions
    from its logits with :func:`dtlens.data.agents.base.sample_actions` at the
    temperature you want (see the module docstring for the exact model).

    Args:
        envs: The Memory envs (any MiniGrid ``MemoryEnv``, wrapped or not), or None to
            attach later.
        logit_scale: Multiplies the logits (default 1: logits in units of one step's
            reward, so temperature T makes a wasted step ``e^(1/T)`` times less likely).
            Sampling at temperature T with scale c is sampling at temperature T / c
            with scale 1; the scale only exists so that a sampling spec written for
            another agent's logit scale (e.g. the seed's ``1:8000 5:16000`` for the
            PPO LSTM) can be reused. See docs/data.md for measured outcome rates.

    Raises:
        EnvError: If an env is not a MiniGrid Memory env.
        ConfigError: If ``logit_scale`` is not a positive finite number.

    Examples:
        >>> from dtlens.env import make_env
        >>> envs = [make_env("MiniGrid-MemoryS7FixedStart-v0", one_hot=False) for _ in range(2)]
        >>> planner = BoltzmannPlanner(envs)
        >>> planner.n_actions, planner.initial_state(2).tolist()
        (7, [-1, -1])
    """

    n_actions: int = _N_ACTIONS

    def __init__(self, envs: Sequence[gymnasium.Env] | None = None, logit_scale: float = 1.0):
        if (
            isinstance(logit_scale, bool)
            or not isinstance(logit_scale, int | float)
            or not 0 < logit_scale < float("inf")
        ):
            raise ConfigError(f"logit_scale must be a positive finite number, got {logit_scale!r}")
        self.logit_scale = float(logit_scale)
        self._envs: list[MemoryEnv] = []
        self._cache: dict[bytes, _Layout] = {}
        self._current: list[tuple[object, _Layout] | None] = []  # (grid object, layout) per env
        if envs is not None:
            self.attach(envs)

    def attach(self, envs: Sequence[gymnasium.Env]) -> None:
        """Play ``envs`` from now on (row ``i`` of ``act`` = ``envs[i]``).

        Examples:
            >>> from dtlens.env import make_env
            >>> planner = BoltzmannPlanner()
            >>> planner.attach([make_env("MiniGrid-MemoryS7FixedStart-v0")])
        """
        unwrapped = [env.unwrapped for env in envs]
        for i, env in enumerate(unwrapped):
            if not isinstance(env, MemoryEnv):
                raise EnvError(
                    f"the planner plans MiniGrid's Memory task; env {i} is a "
                    f"{type(env).__name__}, expected a minigrid MemoryEnv such as "
                    "'MiniGrid-MemoryS7FixedStart-v0'"
                )
        self._envs = unwrapped
        self._current = [None] * len(unwrapped)

    def initial_state(self, n_envs: int) -> Int[torch.Tensor, " n_envs"]:
        """What the planner knows of each env's instruction before an episode: nothing.

        The state is a long tensor ``[n_envs]`` holding the seen instruction's MiniGrid
        object index (5 key, 6 ball) or -1 while unseen.

        Examples:
            >>> BoltzmannPlanner().initial_state(3).tolist()
            [-1, -1, -1]
        """
        return torch.full((n_envs,), _UNSEEN, dtype=torch.long)

    def act(
        self,
        obs: Int[torch.Tensor, "n_envs 7 7 3"],
        state: Int[torch.Tensor, " n_envs"],
        done_mask: Bool[torch.Tensor, " n_envs"] | None = None,
    ) -> tuple[Float[torch.Tensor, "n_envs 7"], Int[torch.Tensor, " n_envs"]]:
        """Logits ``logit_scale * Q / (0.9 / max_steps)`` of the 7 actions in every env.

        Args:
            obs: The raw image each env just returned (used only to see the instruction).
            state: From :meth:`initial_state` or the previous call.
            done_mask: True where the previous step ended the episode (memory reset).

        Returns:
            ``(logits [n_envs, 7] float32, new_state)``.

        Raises:
            ConfigError: If no envs are attached or the batch size does not match them.
            ObservationError: If ``obs`` is not an integer ``[n_envs, 7, 7, 3]`` tensor.

        Examples:
            >>> import torch
            >>> from dtlens.env import make_env
            >>> env = make_env("MiniGrid-MemoryS7FixedStart-v0", max_steps=50, one_hot=False)
            >>> obs, _ = env.reset(seed=0, options={"instruction": "ball", "top": "ball"})
            >>> planner = BoltzmannPlanner([env])
            >>> logits, state = planner.act(torch.as_tensor(obs["image"])[None],
            ...                             planner.initial_state(1))
            >>> int(logits.argmax()), state.tolist()  # forward; the ball (6) was seen
            (2, [6])
        """
        n = len(self._envs)
        if n == 0:
            raise ConfigError("attach the planner to its envs first: BoltzmannPlanner(envs)")
        obs = torch.as_tensor(obs).cpu()
        if tuple(obs.shape) != (n, 7, 7, 3) or obs.is_floating_point():
            raise ObservationError(
                f"obs must be the raw integer images [n_envs, 7, 7, 3] = [{n}, 7, 7, 3] of "
                f"the attached envs, got {obs.dtype} {list(obs.shape)}"
            )
        state = torch.as_tensor(state)
        if tuple(state.shape) != (n,):
            raise ConfigError(f"state must have shape [{n}], got {list(state.shape)}")
        memory = state.numpy().copy()
        if done_mask is not None:
            memory[torch.as_tensor(done_mask, dtype=torch.bool).numpy()] = _UNSEEN
        images = obs.numpy()
        cost = np.empty((2, n, _N_ACTIONS))  # steps to success after each action, per type
        steps_taken = np.empty((n, 1))
        max_steps = np.empty((n, 1))
        for i, env in enumerate(self._envs):
            layout, new_episode = self._layout(i, env)
            if new_episode:
                memory[i] = _UNSEEN
            obj = _object_location(env, layout)
            x, y = (int(v) for v in env.agent_pos)
            s = layout.index.get((x, y, int(env.agent_dir), obj))
            if s is None:
                raise EnvError(
                    f"env {i}: the agent stands on {(x, y)}, which ends the episode; reset "
                    "the env (and pass done_mask) before asking for the next action"
                )
            if memory[i] == _UNSEEN:
                memory[i] = _seen_instruction(env, layout, obj, images[i])
            for h, kind in enumerate(_INSTRUCTION_TYPES):
                cost[h, i] = layout.cost[kind][s]
            steps_taken[i], max_steps[i] = env.step_count, layout.max_steps
        total = steps_taken + cost  # episode length if the plan succeeds
        q = np.where(total <= max_steps, 1 - 0.9 * total / max_steps, 0.0)  # [2, n, 7]
        belief = np.full((n, 2), 0.5)  # P(instruction = key), P(= ball)
        for h, kind in enumerate(_INSTRUCTION_TYPES):
            belief[memory == _TYPE_INDEX[kind]] = np.eye(2)[h]
        logits = np.einsum("nh,hna->na", belief, q) * max_steps / 0.9 * self.logit_scale
        return torch.from_numpy(logits).float(), torch.from_numpy(memory)

    def _layout(self, i: int, env: MemoryEnv) -> tuple[_Layout, bool]:
        current = self._current[i]
        if current is not None and current[0] is env.grid:
            return current[1], False
        key = _layout_key(env)
        if key not in self._cache:
            self._cache[key] = _build_layout(env)
        self._current[i] = (env.grid, self._cache[key])
        return self._cache[key], True


def _terminals(env: MemoryEnv) -> list[tuple[int, int]]:
    """The two squares that end the episode, sorted (which one succeeds is not used)."""
    return sorted(tuple(int(v) for v in p) for p in (env.success_pos, env.failure_pos))


def _target_objects(env: MemoryEnv) -> list[tuple[int, int]]:
    """The two target objects' squares, beyond each episode-ending square away from the
    middle row (MiniGrid MemoryEnv's geometry), in :func:`_terminals` order."""
    out = []
    for x, y in _terminals(env):
        pos = (int(x), int(y) + (1 if y > env.height // 2 else -1))
        cell = env.grid.get(*pos)
        if cell is None or cell.type not in _INSTRUCTION_TYPES:
            raise EnvError(f"no key or ball target at {pos}, beyond the square {(x, y)}")
        out.append(pos)
    return out


def _instruction_cell(env: MemoryEnv) -> tuple[int, int] | None:
    """The instruction object's square, or None while the agent carries it."""
    if env.carrying is not None:
        return None
    targets = _target_objects(env)
    found = [
        (x, y)
        for x in range(env.grid.width)
        for y in range(env.grid.height)
        if (x, y) not in targets
        and env.grid.get(x, y) is not None
        and env.grid.get(x, y).type in _INSTRUCTION_TYPES
    ]
    if len(found) != 1:
        raise EnvError(f"expected one instruction object besides the targets, found {found}")
    return found[0]


def _layout_key(env: MemoryEnv) -> bytes:
    """The map as the planner may know it: the grid without the instruction object (its
    type must be seen, and it moves), the episode-ending squares, the step limit and
    the pickup rule."""
    grid = env.grid.encode().copy()
    cell = _instruction_cell(env)
    if cell is not None:
        grid[cell] = (OBJECT_TO_IDX["empty"], 0, 0)
    facts = np.array([*_terminals(env)[0], *_terminals(env)[1], env.max_steps], dtype=np.int64)
    return grid.tobytes() + facts.tobytes() + bytes([_pickup_works(env)])


def _pickup_works(env: MemoryEnv) -> bool:
    # MiniGrid's MemoryEnv.step turns pickup into toggle; dtlens' env does not by default.
    return getattr(env, "pickup_as_toggle", True) is False


def _build_layout(env: MemoryEnv) -> _Layout:
    """Enumerate every (agent square, direction, instruction object location) with its
    7 successors, then search backwards from each target for the distances."""
    grid = env.grid
    instruction = _instruction_cell(env)
    free = {
        (x, y)
        for x in range(grid.width)
        for y in range(grid.height)
        if (x, y) == instruction or grid.get(x, y) is None or grid.get(x, y).can_overlap()
    }
    cells = sorted(free)
    cell_id = {c: i for i, c in enumerate(cells)}
    # terminal codes -1 / -2: the two episode-ending squares; which one pays is decided
    # by the instruction seen and the target type beyond each square
    terminals = _terminals(env)
    pickup_works = _pickup_works(env)

    def step(state: tuple[int, int, int, int], action: int) -> tuple[int, int, int, int] | int:
        x, y, d, obj = state
        dx, dy = (int(v) for v in DIR_TO_VEC[d])
        front = (x + dx, y + dy)
        obj_cell = cells[obj] if obj != _CARRIED else None
        if action == Actions.left:
            return (x, y, (d - 1) % 4, obj)
        if action == Actions.right:
            return (x, y, (d + 1) % 4, obj)
        if action == Actions.forward and front in free and front != obj_cell:
            if front in terminals:
                return _TERMINAL_CODES[terminals.index(front)]
            return (*front, d, obj)
        if action == Actions.pickup and pickup_works and front == obj_cell:
            return (x, y, d, _CARRIED)
        if action == Actions.drop and obj == _CARRIED and front in free:
            return (x, y, d, cell_id[front])
        return state  # blocked forward, no-op pickup/drop, toggle, done

    # every agent square (not an episode-ending one) x direction x object location
    states = [
        (x, y, d, obj)
        for obj in (_CARRIED, *range(len(cells)))
        for (x, y) in cells
        if (x, y) not in terminals and (obj == _CARRIED or cells[obj] != (x, y))
        for d in range(4)
    ]
    index = {s: i for i, s in enumerate(states)}
    next_state = np.array(
        [
            [t if isinstance(t, int) else index[t] for t in (step(s, a) for a in range(7))]
            for s in states
        ],
        dtype=np.int64,
    ).reshape(len(states), _N_ACTIONS)
    success_code = {
        grid.get(*target).type: code
        for target, code in zip(_target_objects(env), _TERMINAL_CODES, strict=True)
    }
    if sorted(success_code) != sorted(_INSTRUCTION_TYPES):
        raise EnvError(f"the targets must be one key and one ball, got {sorted(success_code)}")
    return _Layout(
        index=index,
        cells=cells,
        next_state=next_state,
        cost={t: _costs(next_state, c) for t, c in success_code.items()},
        success_code=success_code,
        max_steps=int(env.max_steps),
    )


def _distances(next_state: np.ndarray, success: int) -> np.ndarray:
    """Fewest steps from each state to entering the success square (inf if never)."""
    n_states = next_state.shape[0]
    predecessors: list[list[int]] = [[] for _ in range(n_states)]
    for s, t in zip(*np.nonzero(next_state >= 0), strict=True):
        predecessors[next_state[s, t]].append(int(s))
    distance = np.full(n_states, np.inf)
    first = np.flatnonzero((next_state == success).any(axis=1))
    distance[first] = 1
    queue = deque(first.tolist())
    while queue:
        s = queue.popleft()
        for p in predecessors[s]:
            if distance[p] == np.inf:
                distance[p] = distance[s] + 1
                queue.append(p)
    return distance


def _costs(next_state: np.ndarray, success: int) -> np.ndarray:
    """``[S, 7]``: steps from each state to success when starting with each action
    (1 for entering the success square, inf for the failure square or no way)."""
    distance = _distances(next_state, success)
    cost = np.where(next_state >= 0, 1 + distance[np.maximum(next_state, 0)], np.inf)
    return np.where(next_state == success, 1.0, cost)


def _object_location(env: MemoryEnv, layout: _Layout) -> int:
    """The instruction object's location code: its cell id, or -1 while carried."""
    if env.carrying is not None:
        return _CARRIED
    for cell_id, cell in enumerate(layout.cells):
        obj = env.grid.get(*cell)
        if obj is not None and not obj.can_overlap():
            return cell_id  # the only object on a walkable square is the instruction
    raise EnvError("the planner lost track of the instruction object (not a Memory layout?)")


def _seen_instruction(env: MemoryEnv, layout: _Layout, obj: int, image: np.ndarray) -> int:
    """The instruction's object index if the observed view shows the object, else -1."""
    if obj == _CARRIED:
        view = _AGENT_VIEW_CELL
    else:
        view = env.relative_coords(*layout.cells[obj])
        if view is None:
            return _UNSEEN
    seen = int(image[view[0], view[1], 0])
    return seen if seen in _TYPE_INDEX.values() else _UNSEEN
