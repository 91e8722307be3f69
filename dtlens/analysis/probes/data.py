"""What probes read: windows of Memory episodes, labelled with facts of the environment.

Background:
    A probe needs many inputs that differ in the fact it looks for and in much else.
    :class:`ProbeData` holds windows (one :class:`~dtlens.model.TrajectoryBatch`, padded
    to the model's context the way the model expects) and, per window, the facts of
    the environment at its last step:

    - ``instruction``: 0 key, 1 ball (the object shown only in the first observation);
    - ``target_side``: where the object matching the instruction is, 0 top, 1 bottom
      (the turn at the decision square: instruction XOR the target order);
    - ``rtg_bucket``: the RTG token of the last step, in ``n_rtg_buckets`` equal bins
      of the RTG range the windows were drawn from;
    - ``steps_to_decision``: the fewest actions (left, right, forward) from the agent's
      pose to the decision square (5, 3), the end of the corridor.

    Two sources:

    - :func:`memory_windows`: scripted routes. Each walks the corridor to the decision
      square (4 ``forward``) with random detours put in anywhere: actions that change
      nothing (``drop``, ``toggle``, ``done``: the agent carries nothing and nothing in
      reach toggles) and turn pairs (``left, right`` / ``right, left``); not ``pickup``,
      which would take the instruction object when facing it. Routes are at most
      ``n_timesteps - 1`` actions long, so the first observation (the only one showing
      the instruction) stays in the window. Layouts are balanced; the RTG is fixed or
      drawn uniformly from a range. Nothing depends on the model but the window and
      its padding.
    - :func:`rollout_windows`: the model's own episodes
      (:func:`~dtlens.training.evaluate.rollout`, sampled at a temperature), replayed
      to read the agent's pose at every step.

    ``at="decision"`` keeps the windows ending on the decision square facing the wall
    (east), where the model makes its memory decision; ``at="all"`` keeps every step.

Example:
    >>> data = memory_windows(model, n_routes=200, rtg=0.9, seed=0)  # doctest: +SKIP
    >>> len(data), sorted(data.labels)  # doctest: +SKIP
    (200, ['instruction', 'rtg_bucket', 'steps_to_decision', 'target_side'])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from dtlens.env import MEMORY_ENV_ID, SCENARIOS, Scenario, make_env, model_observations
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "DECISION_POSE",
    "FACTS",
    "FACT_VALUES",
    "ProbeData",
    "memory_windows",
    "rollout_windows",
    "steps_to_decision",
]

#: the facts every window is labelled with.
FACTS: tuple[str, ...] = ("instruction", "target_side", "rtg_bucket", "steps_to_decision")
#: names of the values of the categorical facts (the others are numbers).
FACT_VALUES: dict[str, tuple[str, ...]] = {
    "instruction": ("key", "ball"),
    "target_side": ("top", "bottom"),
}
#: the decision square facing the wall: ``(x, y, direction)``, direction 0 = east.
DECISION_POSE: tuple[int, int, int] = (5, 3, 0)
_CORRIDOR = (2, 2, 2, 2)  # forward x 4: start -> decision square
_DETOURS: tuple[tuple[int, ...], ...] = ((4,), (5,), (6,), (0, 1), (1, 0))
_MAX_STEPS = 50
At = Literal["decision", "all"]


@dataclass(frozen=True)
class ProbeData:
    """Windows and the facts of the environment at each window's last step.

    Attributes:
        batch: ``N`` windows, all ``model.cfg.n_timesteps`` long (padded as the model
            expects), each ending at the step its labels describe.
        labels: fact -> ``[N]`` int labels (see the module docstring).
        rtg: ``[N]`` the RTG token of each window's last step.
        layouts: ``N`` layout names (``"key/top-ball"``).
        rtg_edges: the inner edges of the RTG buckets.
    """

    batch: TrajectoryBatch
    labels: dict[str, np.ndarray]
    rtg: np.ndarray
    layouts: tuple[str, ...]
    rtg_edges: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = self.batch.batch_size
        sizes = {k: int(v.shape[0]) for k, v in self.labels.items()}
        if any(size != n for size in sizes.values()) or len(self.layouts) != n:
            raise ConfigError(
                f"ProbeData holds {n} windows but labels of sizes {sizes} and "
                f"{len(self.layouts)} layouts."
            )

    def __len__(self) -> int:
        return self.batch.batch_size

    def subset(self, index: np.ndarray | Sequence[int]) -> ProbeData:
        """The windows at ``index`` (ints, or a boolean mask), labels alike."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return ProbeData(
            self.batch[torch.as_tensor(index, dtype=torch.long)],
            {k: v[index] for k, v in self.labels.items()},
            self.rtg[index],
            tuple(self.layouts[i] for i in index.tolist()),
            self.rtg_edges,
        )


def steps_to_decision(pose: tuple[int, int, int]) -> int:
    """Fewest actions (left, right, forward) from ``pose`` to stand on the decision square.

    The same in every layout (only the object types differ); the squares next to the
    targets end the episode and are never passed. ``-1`` for a pose that cannot get
    there (one on such a square).

    Examples:
        >>> steps_to_decision((1, 3, 0)), steps_to_decision((5, 3, 2)), steps_to_decision((3, 3, 2))
        (4, 0, 4)
    """
    return _decision_distances().get(tuple(int(v) for v in pose), -1)


@lru_cache(maxsize=1)
def _decision_distances() -> dict[tuple[int, int, int], int]:
    from minigrid.core.constants import DIR_TO_VEC

    from dtlens.env.memory import MemoryS7FixedStartEnv

    env = MemoryS7FixedStartEnv()
    env.reset(seed=0, options=SCENARIOS[0].options)
    ends = {env.success_pos, env.failure_pos}
    free = {
        (x, y)
        for x in range(env.width)
        for y in range(env.height)
        if (env.grid.get(x, y) is None or env.grid.get(x, y).can_overlap()) and (x, y) not in ends
    }

    def moves(pose: tuple[int, int, int]) -> list[tuple[int, int, int]]:
        x, y, d = pose
        dx, dy = (int(v) for v in DIR_TO_VEC[d])
        out = [(x, y, (d - 1) % 4), (x, y, (d + 1) % 4)]
        if (x + dx, y + dy) in free:
            out.append((x + dx, y + dy, d))
        return out

    poses = [(x, y, d) for x, y in free for d in range(4)]
    reverse: dict[tuple[int, int, int], list[tuple[int, int, int]]] = {p: [] for p in poses}
    for pose in poses:
        for nxt in moves(pose):
            reverse[nxt].append(pose)
    dist = {p: 0 for p in poses if p[:2] == DECISION_POSE[:2]}
    queue = deque(dist)
    while queue:
        pose = queue.popleft()
        for prev in reverse[pose]:
            if prev not in dist:
                dist[prev] = dist[pose] + 1
                queue.append(prev)
    return dist


def memory_windows(
    model: HookedDecisionTransformer,
    n_routes: int = 400,
    rtg: float | tuple[float, float] = 0.9,
    seed: int = 0,
    at: At = "decision",
    n_rtg_buckets: int = 4,
) -> ProbeData:
    """Windows of scripted routes to the decision square, with random detours.

    Args:
        model: the model the windows are for (its context length and padding).
        n_routes: routes, spread evenly over the four layouts.
        rtg: the RTG of every route, or ``(low, high)``: one RTG per route drawn
            uniformly from that range (constant along the route, as in Memory).
        seed: seeds the detours, their places and the RTGs.
        at: ``"decision"`` (one window per route, ending on the decision square facing
            east) or ``"all"`` (a window ending at every step of every route).
        n_rtg_buckets: equal bins of the RTG range for ``rtg_bucket``.

    Raises:
        ConfigError: ``n_routes < 1``, a bad ``at`` or RTG range.

    Example:
        >>> data = memory_windows(model, n_routes=8, seed=1)  # doctest: +SKIP
        >>> data.labels["instruction"].tolist()  # doctest: +SKIP
        [0, 0, 1, 1, 0, 0, 1, 1]
    """
    if isinstance(n_routes, bool) or not isinstance(n_routes, int) or n_routes < 1:
        raise ConfigError(f"n_routes={n_routes!r} must be a positive int.")
    low, high = _rtg_range(rtg)
    rng = np.random.default_rng(seed)
    budget = max(0, model.cfg.n_timesteps - 1 - len(_CORRIDOR))
    episodes = []
    for i in range(n_routes):
        route = _detoured_route(rng, int(rng.integers(0, budget + 1)))
        value = float(rng.uniform(low, high)) if high > low else low
        episodes.append((SCENARIOS[i % len(SCENARIOS)], route, value, 0))
    return _windows(model, episodes, at, (low, high), n_rtg_buckets)


def rollout_windows(
    model: HookedDecisionTransformer,
    n_episodes: int = 400,
    rtg: float | tuple[float, float] = 0.9,
    seed: int = 0,
    at: At = "decision",
    temperature: float = 1.0,
    max_steps: int | None = None,
    n_rtg_buckets: int = 4,
) -> ProbeData:
    """Windows of the model's own sampled episodes (layouts balanced).

    Args:
        model: the model played (and whose context and padding the windows take).
        n_episodes: episodes, spread evenly over the four layouts.
        rtg: the initial RTG, or ``(low, high)`` to draw one per episode uniformly.
        seed: first episode seed (episode i gets ``seed + i``) and the RTG draws' seed.
        at: ``"decision"``: windows ending on the decision square facing east while
            the first observation is still in the context; ``"all"``: every step.
        temperature: the sampling temperature (0 = greedy: four distinct episodes).
        max_steps: episode limit (default the model's context, ``n_timesteps``: the
            steps whose window still holds the first observation).
        n_rtg_buckets: equal bins of the RTG range for ``rtg_bucket``.

    Raises:
        ConfigError: no window qualifies (e.g. no episode reached the decision square).

    Example:
        >>> data = rollout_windows(model, 200, rtg=(0.0, 0.9), at="all")  # doctest: +SKIP
    """
    from dtlens.training.evaluate import rollout

    low, high = _rtg_range(rtg)
    steps = model.cfg.n_timesteps if max_steps is None else max_steps
    rng = np.random.default_rng(seed)
    rtgs = rng.uniform(low, high, n_episodes) if high > low else np.full(n_episodes, low)
    result = rollout(
        model,
        initial_rtg=rtgs,
        seeds=seed + np.arange(n_episodes),
        layouts="balanced",
        temperature=temperature,
        max_steps=steps,
    )
    by_name = {s.name: s for s in SCENARIOS}
    episodes = [
        (by_name[name], list(actions), float(value), int(s))
        for name, actions, value, s in zip(
            result.layouts, result.actions, rtgs, result.seeds, strict=True
        )
    ]
    data = _windows(model, episodes, at, (low, high), n_rtg_buckets, from_rollout=True)
    if at == "decision":  # padded steps have timestep 0 too: 0 first = step 0 in context
        data = data.subset(data.batch.timesteps[:, 0].numpy() == 0)
    if len(data) == 0:
        raise ConfigError(
            f"none of the {n_episodes} episodes reached the decision square facing east "
            "with its first observation in context; play more episodes or another RTG."
        )
    return data


# ----------------------------------------------------------------------- helpers
def _rtg_range(rtg: float | tuple[float, float]) -> tuple[float, float]:
    low, high = (rtg, rtg) if isinstance(rtg, int | float) else (float(rtg[0]), float(rtg[1]))
    if not (np.isfinite(low) and np.isfinite(high)) or high < low:
        raise ConfigError(f"rtg={rtg!r} must be a finite number or a (low, high) range.")
    return float(low), float(high)


def _detoured_route(rng: np.random.Generator, budget: int) -> list[int]:
    route = list(_CORRIDOR)
    while budget > 0:
        detour = _DETOURS[int(rng.integers(len(_DETOURS)))]
        if len(detour) > budget:
            continue
        place = int(rng.integers(0, len(route) + 1))
        route[place:place] = detour
        budget -= len(detour)
    return route


def _play(env, scenario: Scenario, route: list[int], seed: int, strict: bool):
    """Raw views, poses before each action (and after the last) along ``route``."""
    obs, _ = env.reset(seed=seed, options=scenario.options)
    inner = env.unwrapped
    images, poses = [obs["image"]], [_pose(inner)]
    for action in route:
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            if strict:  # pragma: no cover - scripted routes never end the episode
                raise ConfigError(f"route {route} ends the episode in {scenario.name}")
            break
        images.append(obs["image"])
        poses.append(_pose(inner))
    return np.stack(images), poses


def _pose(inner) -> tuple[int, int, int]:
    return (*(int(v) for v in inner.agent_pos), int(inner.agent_dir))


class _PoseSteps:
    """The env's step, memoised by (layout, pose, action), for scripted routes.

    Their actions move, turn or do nothing (no ``pickup``), so the world is the layout
    and the agent's pose alone: a step from a pose gives the same pose and view every
    time. A miss places the agent in a real env and steps it.
    """

    def __init__(self, env) -> None:
        self.env, self.inner = env, env.unwrapped
        self.cache: dict[tuple, tuple[tuple[int, int, int], np.ndarray]] = {}
        self.starts: dict[str, tuple[tuple[int, int, int], np.ndarray]] = {}

    def play(self, scenario: Scenario, route: list[int]):
        if scenario.name not in self.starts:
            obs, _ = self.env.reset(seed=0, options=scenario.options)
            self.starts[scenario.name] = (_pose(self.inner), obs["image"])
        pose, image = self.starts[scenario.name]
        images, poses = [image], [pose]
        for action in route:
            key = (scenario.name, pose, int(action))
            if key not in self.cache:
                self.env.reset(seed=0, options=scenario.options)
                self.inner.agent_pos = (pose[0], pose[1])
                self.inner.agent_dir = pose[2]
                obs, _, terminated, truncated, _ = self.env.step(int(action))
                if terminated or truncated:  # pragma: no cover - never on scripted routes
                    raise ConfigError(f"route {route} ends the episode in {scenario.name}")
                self.cache[key] = (_pose(self.inner), obs["image"])
            pose, image = self.cache[key]
            images.append(image)
            poses.append(pose)
        return np.stack(images), poses


def _windows(
    model: HookedDecisionTransformer,
    episodes: list[tuple[Scenario, list[int], float, int]],
    at: str,
    rtg_range: tuple[float, float],
    n_buckets: int,
    from_rollout: bool = False,
) -> ProbeData:
    if at not in ("decision", "all"):
        raise ConfigError(f"at={at!r} must be 'decision' or 'all'.")
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int) or n_buckets < 1:
        raise ConfigError(f"n_rtg_buckets={n_buckets!r} must be a positive int.")
    low, high = rtg_range
    inner = np.linspace(low, high, n_buckets + 1)[1:-1] if high > low else []
    edges = tuple(float(e) for e in inner)  # a fixed RTG: one bucket
    window = model.cfg.n_timesteps
    pieces: list[tuple[np.ndarray, list[int], float, int]] = []  # images, route, rtg, t
    facts: dict[str, list[int]] = {f: [] for f in FACTS}
    rtgs: list[float] = []
    layouts: list[str] = []
    longest = max(len(route) for _, route, _, _ in episodes)
    env = make_env(MEMORY_ENV_ID, max_steps=max(_MAX_STEPS, longest + 1), one_hot=False)
    if from_rollout:  # the model's actions may pick the instruction object up: step the env
        plays = [_play(env, s, route, seed, strict=False) for s, route, _, seed in episodes]
    else:
        stepper = _PoseSteps(env)
        plays = [stepper.play(s, route) for s, route, _, _ in episodes]
    env.close()
    for (scenario, route, value, _), (images, poses) in zip(episodes, plays, strict=True):
        steps = list(range(len(poses))) if at == "all" else [len(poses) - 1]
        if at == "decision" and from_rollout:
            steps = [t for t, pose in enumerate(poses) if pose == DECISION_POSE][:1]
        for t in steps:
            pieces.append((images, route, value, t))
            facts["instruction"].append(FACT_VALUES["instruction"].index(scenario.instruction))
            facts["target_side"].append(FACT_VALUES["target_side"].index(scenario.target))
            facts["rtg_bucket"].append(int(np.searchsorted(edges, value, side="right")))
            facts["steps_to_decision"].append(steps_to_decision(poses[t]))
            rtgs.append(value)
            layouts.append(scenario.name)
    if not pieces:
        raise ConfigError("no window qualifies; play more episodes or use at='all'.")
    return ProbeData(
        _batch(model, pieces, window),
        {k: np.asarray(v, dtype=np.int64) for k, v in facts.items()},
        np.asarray(rtgs, dtype=np.float64),
        tuple(layouts),
        edges,
    )


def _batch(
    model: HookedDecisionTransformer,
    pieces: list[tuple[np.ndarray, list[int], float, int]],
    window: int,
) -> TrajectoryBatch:
    """The windows ending at observation ``t`` of each piece: the last ``window`` steps,
    padded the model's way; built one batch per window length, in the pieces' order."""
    by_length: dict[int, list[int]] = {}
    for index, (_, _, _, t) in enumerate(pieces):
        by_length.setdefault(min(t + 1, window), []).append(index)
    parts, order = [], []
    for length, indices in sorted(by_length.items()):
        images, actions, rtg, timesteps = [], [], [], []
        for i in indices:
            views, route, value, t = pieces[i]
            start = t + 1 - length
            images.append(views[start : t + 1])
            actions.append(route[start:t])
            rtg.append([value] * length)
            timesteps.append(list(range(start, t + 1)))
        raw = torch.as_tensor(np.stack(images))
        obs = model_observations(raw, model.cfg.one_hot_obs)
        batch = TrajectoryBatch(
            obs=obs,
            actions=torch.tensor(actions, dtype=torch.long).reshape(len(indices), length - 1),
            rtg=torch.tensor(rtg, dtype=torch.float32),
            timesteps=torch.tensor(timesteps, dtype=torch.long),
        )
        parts.append(model.pad_context(batch))
        order.extend(indices)
    batch = TrajectoryBatch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return batch[inverse]
