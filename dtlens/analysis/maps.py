"""Action maps: the model's action distribution with the agent placed on every square.

Background:
    The seed watched the MemoryDT walk one routine. Off the routine — anywhere else in
    the room, facing any way — what does the model want to do? This module places the
    agent on every square it can stand on, in each of the 4 facings, in each of the
    4 layouts (instruction x upper target), and reads the model's action distribution
    there: ``probs[instruction, top, x, y, direction, action]``.

Placing the agent:
    A decision transformer conditions on a trajectory, not on a square, so "placing"
    means choosing the history it sees. Here that history is a real episode: the
    start step (which shows the instruction object beside the agent) followed by the
    shortest route from the start to the square and facing
    (:func:`dtlens.env.poses.placement_routes`: breadth-first search with left, right,
    forward that never enters the squares ending the episode), played in the env
    with the layout forced, so every observation, action and timestep is one the env
    produces. The RTG token is the same at every step (Memory pays only at the end).
    The window is the last ``model.cfg.n_timesteps`` steps of that episode, padded the
    way the model expects (:meth:`~dtlens.model.hooked_dt.HookedDecisionTransformer.pad_context`:
    masked padding for dtlens models, padding run as tokens for the original
    checkpoints). Every route is at most 6 actions, so a window of 7 or more steps
    (MemoryDT's is 9) always begins at the start step and shows the instruction.

Examples:
    >>> import dtlens
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> maps = action_maps(model, rtg=0.9)  # doctest: +SKIP
    >>> maps.prob("key/top-ball", (5, 3, 0), "right")  # doctest: +SKIP
    0.99...
    >>> maps.plot().show()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.env import (
    ACTION_NAMES,
    MEMORY_ENV_ID,
    OBJECT_TYPES,
    SCENARIOS,
    Scenario,
    make_env,
    model_observations,
)
from dtlens.env.poses import (
    DIRECTION_NAMES,
    Pose,
    optimal_first_actions,
    placement_routes,
    pose_distances,
)
from dtlens.env.scenarios import as_scenario
from dtlens.errors import DTLensError, EnvError
from dtlens.model.batch import TrajectoryBatch

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["AXES", "ActionMaps", "action_maps", "layout_cells", "placement_batch"]

#: the axes of :attr:`ActionMaps.probs`, in order.
AXES: tuple[str, ...] = ("instruction", "top", "x", "y", "direction", "action")

_MAX_STEPS = 50
_GRID = 7


@dataclass(frozen=True)
class ActionMaps:
    """The model's action distribution with the agent placed on every square and facing.

    Attributes:
        probs: ``[instruction, top, x, y, direction, action]`` probabilities (softmax of
            the logits at the last state token); NaN where the agent is not placed
            (walls, objects, the squares that end the episode).
        rtg: the RTG token of every step of the windows.
        poses: the placed ``(x, y, direction)``, in the order of :attr:`routes`.
        routes: the action sequence from the start that placed the agent at each pose.
        cells: ``[instruction, top, x, y]`` what each square holds: ``"wall"``,
            ``"empty"``, ``"key"``, ``"ball"``, ``"match"`` (entering it succeeds) or
            ``"other"`` (entering it fails).
        labels: one label per index of each axis of :data:`AXES`.
        padding: how the windows were padded (``model.context_padding``).
        n_steps: the window length (``model.cfg.n_timesteps``).
    """

    probs: Float[Tensor, "instruction top x y direction action"]
    rtg: float
    poses: tuple[Pose, ...]
    routes: tuple[tuple[int, ...], ...]
    cells: np.ndarray
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    padding: str = "mask"
    n_steps: int = 9

    def __post_init__(self) -> None:
        if self.probs.ndim != len(AXES):
            raise DTLensError(
                f"ActionMaps.probs must have axes {AXES}, got shape {list(self.probs.shape)}"
            )
        if tuple(np.shape(self.cells)) != tuple(self.probs.shape[:4]):
            raise DTLensError(
                f"ActionMaps.cells must be [instruction, top, x, y] = "
                f"{list(self.probs.shape[:4])}, got {list(np.shape(self.cells))}"
            )
        if len(self.poses) != len(self.routes):
            raise DTLensError(f"{len(self.poses)} poses but {len(self.routes)} routes")
        for axis, size in zip(AXES, self.probs.shape, strict=True):
            if len(self.labels.get(axis, ())) != size:
                raise DTLensError(
                    f"axis {axis!r} has {size} entries but {len(self.labels.get(axis, ()))} labels"
                )

    @property
    def axes(self) -> tuple[str, ...]:
        """:data:`AXES`."""
        return AXES

    @property
    def layouts(self) -> tuple[Scenario, ...]:
        """The four layouts, in ``probs`` order (instruction-major)."""
        return tuple(Scenario(i, t) for i in self.labels["instruction"] for t in self.labels["top"])

    def _layout_index(self, layout: Scenario | str | tuple[str, str]) -> tuple[int, int]:
        scenario = as_scenario(layout)
        return (
            self.labels["instruction"].index(scenario.instruction),
            self.labels["top"].index(scenario.top),
        )

    def layout_probs(
        self, layout: Scenario | str | tuple[str, str]
    ) -> Float[Tensor, "x y direction action"]:
        """``probs`` of one layout, ``[x, y, direction, action]``."""
        return self.probs[self._layout_index(layout)]

    def prob(
        self, layout: Scenario | str | tuple[str, str], pose: Pose, action: int | str
    ) -> float:
        """The probability of ``action`` with the agent at ``pose`` in ``layout``.

        Raises:
            DTLensError: for a pose where the agent was not placed or an unknown action.
        """
        x, y, d = (int(v) for v in pose)
        if (x, y, d) not in self.poses:
            raise DTLensError(f"the agent was not placed at {pose!r}; placed poses: {self.poses}")
        a = self._action_index(action)
        return float(self.probs[(*self._layout_index(layout), x, y, d, a)])

    def _action_index(self, action: int | str) -> int:
        names = self.labels["action"]
        if isinstance(action, str) and action in names:
            return names.index(action)
        if isinstance(action, int) and not isinstance(action, bool) and 0 <= action < len(names):
            return action
        raise DTLensError(f"unknown action {action!r}; actions: {list(names)}")

    def greedy_actions(self, layout: Scenario | str | tuple[str, str]) -> dict[Pose, int]:
        """The most probable action at each placed pose of ``layout``."""
        table = self.layout_probs(layout)
        return {pose: int(table[pose].argmax()) for pose in self.poses}

    def agreement(
        self,
        layout: Scenario | str | tuple[str, str],
        to: str = "match",
        poses: Sequence[Pose] | None = None,
    ) -> float:
        """Fraction of placed poses whose most probable action starts a shortest route
        to the matching target (``to="match"``) or to the other one (``"other"``).

        Args:
            layout: a :class:`Scenario`, its name or ``(instruction, top)``.
            to: ``"match"`` or ``"other"``.
            poses: only these poses (default every placed pose), e.g.
                :func:`dtlens.env.poses.decisive_poses`.

        Examples:
            >>> from dtlens.env.poses import decisive_poses
            >>> square = decisive_poses("key/top-ball")  # the 4 facings at (5, 3)
            >>> maps.agreement("key/top-ball", "match", square)  # doctest: +SKIP
            1.0
        """
        scenario = as_scenario(layout)
        distance = pose_distances(scenario, to)
        greedy = self.greedy_actions(scenario)
        chosen = self.poses if poses is None else [tuple(int(v) for v in p) for p in poses]
        counted = [p for p in chosen if p in greedy and distance.get(p, 0) > 0]
        hits = sum(greedy[p] in optimal_first_actions(scenario, p, to) for p in counted)
        return hits / len(counted) if counted else float("nan")

    def entropy(self) -> Float[Tensor, "instruction top x y direction"]:
        """Entropy (nats) of the action distribution at each pose; NaN where not placed.

        ``-sum_a p(a) log p(a)``, with ``0 log 0 = 0``: 0 for a certain action, ``log 7``
        for a uniform choice among MiniGrid's seven.

        Examples:
            >>> import dataclasses, math
            >>> maps = action_maps(model, rtg=0.9)  # the tiny doctest model, 4-step windows
            >>> probs = maps.probs.clone()
            >>> probs[0, 0, 1, 3, 0] = 1 / 7                # uniform at pose (1, 3, east)
            >>> probs[0, 0, 2, 3, 0] = torch.eye(7)[2]      # certain at (2, 3, east)
            >>> entropy = dataclasses.replace(maps, probs=probs).entropy()
            >>> round(float(entropy[0, 0, 1, 3, 0]), 4) == round(math.log(7), 4)
            True
            >>> float(entropy[0, 0, 2, 3, 0]), bool(entropy[0, 0, 0, 0, 0].isnan())  # a wall
            (0.0, True)
        """
        p = self.probs
        return (p * -p.clamp_min(1e-30).log()).sum(-1) + 0.0  # + 0.0: no -0.0 when certain

    def to_records(self, decimals: int = 4) -> list[dict[str, Any]]:
        """One record per layout and placed pose: where, how it got there, and the
        probability of every action (rounded to ``decimals``), layout-major."""
        records = []
        for scenario in self.layouts:
            table = self.layout_probs(scenario)
            for pose, route in zip(self.poses, self.routes, strict=True):
                x, y, d = pose
                records.append(
                    {
                        "layout": scenario.name,
                        "x": x,
                        "y": y,
                        "direction": self.labels["direction"][d],
                        "route_length": len(route),
                        "probs": {
                            name: round(float(p), decimals)
                            for name, p in zip(self.labels["action"], table[x, y, d], strict=True)
                        },
                    }
                )
        return records

    def plot(
        self,
        actions: Sequence[int | str] = ("left", "right", "forward"),
        layouts: Sequence[Scenario | str | tuple[str, str]] | None = None,
        title: str | None = None,
    ) -> go.Figure:
        """The maps on the grid: one row per layout, one column per action; see
        :func:`dtlens.plotting.maps.plot_action_maps`."""
        from dtlens.plotting.maps import plot_action_maps

        chosen = self.layouts if layouts is None else [as_scenario(s) for s in layouts]
        index = [self._layout_index(s) for s in chosen]
        probs = torch.stack([self.probs[i] for i in index])
        cells = np.stack([self.cells[i] for i in index])
        columns = [self._action_index(a) for a in actions]
        return plot_action_maps(
            probs,
            cells,
            layout_names=[s.name for s in chosen],
            action_names=list(self.labels["action"]),
            actions=columns,
            direction_names=list(self.labels["direction"]),
            title=title
            or f"Action probabilities with the agent placed on every square (RTG {self.rtg:g})",
        )


def placement_batch(
    model: HookedDecisionTransformer,
    layout: Scenario | str | tuple[str, str],
    rtg: float = 0.9,
    poses: Sequence[Pose] | None = None,
) -> tuple[TrajectoryBatch, tuple[Pose, ...]]:
    """The windows that place the agent at each pose of ``layout`` (see the module docs).

    Args:
        model: the model the windows are for (its context length, padding and input
            encoding).
        layout: a :class:`Scenario`, its name or ``(instruction, top)``.
        rtg: the RTG token of every step.
        poses: the poses (default: every placeable pose, sorted).

    Returns:
        ``(batch, poses)``: one row per pose, each the last ``model.cfg.n_timesteps``
        steps of the episode start -> shortest route -> pose, padded by
        ``model.pad_context``; the model's action at the pose is read at the last state
        token.

    Raises:
        EnvError: for an unknown layout or a pose the agent cannot be placed at.

    Examples:
        >>> batch, poses = placement_batch(model, "key/top-ball")  # doctest: +SKIP
        >>> batch.batch_size, poses[0]  # doctest: +SKIP
        (40, (1, 3, 0))
    """
    scenario = as_scenario(layout)
    routes = placement_routes(scenario)
    chosen = tuple(routes) if poses is None else tuple(tuple(int(v) for v in p) for p in poses)
    for pose in chosen:
        if pose not in routes:
            raise EnvError(
                f"the agent cannot be placed at {pose!r} in {scenario.name}; placeable poses: "
                f"{list(routes)}"
            )
    window = model.cfg.n_timesteps
    env = make_env(MEMORY_ENV_ID, max_steps=_MAX_STEPS, one_hot=False)
    rows = []
    try:
        for pose in chosen:
            images = _replay(env, scenario, routes[pose], pose)
            n = len(images)
            start = max(0, n - window)
            raw = torch.as_tensor(images[start:])
            obs = model_observations(raw, model.cfg.one_hot_obs)
            row = TrajectoryBatch(
                obs=obs[None],
                actions=torch.tensor(routes[pose][start:], dtype=torch.long)[None],
                rtg=torch.full((1, n - start), float(rtg)),
                timesteps=torch.arange(start, n)[None],
            )
            rows.append(model.pad_context(row))
    finally:
        env.close()
    return TrajectoryBatch.cat(rows), chosen


@torch.no_grad()
def action_maps(model: HookedDecisionTransformer, rtg: float = 0.9) -> ActionMaps:
    """Place the agent on every square and facing of every layout; read the model's
    action distribution there.

    One forward over all ``4 layouts x 40 poses`` windows (:func:`placement_batch`).

    Args:
        model: a decision transformer for ``MiniGrid-MemoryS7FixedStart-v0``.
        rtg: the RTG token of every step (0.9 to ask for success, 0.0 for failure).

    Returns:
        An :class:`ActionMaps`.

    Examples:
        >>> maps = action_maps(model, rtg=0.9)  # doctest: +SKIP
        >>> maps.probs.shape  # doctest: +SKIP
        torch.Size([2, 2, 7, 7, 4, 7])
    """
    batches, poses = [], None
    for scenario in SCENARIOS:
        batch, poses = placement_batch(model, scenario, rtg)
        batches.append(batch)
    assert poses is not None
    was_training = model.training
    model.eval()
    try:
        logits = model.action_logits(TrajectoryBatch.cat(batches).to(model.device))[:, -1]
    finally:
        model.train(was_training)
    flat = logits.float().softmax(-1).cpu().reshape(len(SCENARIOS), len(poses), -1)
    n_actions = flat.shape[-1]
    probs = torch.full((2, 2, _GRID, _GRID, 4, n_actions), float("nan"))
    for k, scenario in enumerate(SCENARIOS):
        i, t = OBJECT_TYPES.index(scenario.instruction), OBJECT_TYPES.index(scenario.top)
        for j, (x, y, d) in enumerate(poses):
            probs[i, t, x, y, d] = flat[k, j]
    routes = placement_routes(SCENARIOS[0])
    action_labels = tuple(
        ACTION_NAMES[a] if a < len(ACTION_NAMES) else str(a) for a in range(n_actions)
    )
    labels = {
        "instruction": OBJECT_TYPES,
        "top": OBJECT_TYPES,
        "x": tuple(str(v) for v in range(_GRID)),
        "y": tuple(str(v) for v in range(_GRID)),
        "direction": DIRECTION_NAMES,
        "action": action_labels,
    }
    cells = np.stack(
        [np.stack([layout_cells(Scenario(i, t)) for t in OBJECT_TYPES]) for i in OBJECT_TYPES]
    )
    return ActionMaps(
        probs=probs,
        rtg=float(rtg),
        poses=poses,
        routes=tuple(routes[p] for p in poses),
        cells=cells,
        labels=labels,
        padding=model.context_padding,
        n_steps=model.cfg.n_timesteps,
    )


def layout_cells(layout: Scenario | str | tuple[str, str]) -> np.ndarray:
    """What each square of a layout holds, ``[x, y]`` strings: ``"wall"``, ``"empty"``,
    ``"key"``, ``"ball"``, ``"match"`` (the square whose entry succeeds) or ``"other"``.

    Examples:
        >>> cells = layout_cells("key/top-ball")
        >>> [str(cells[x, y]) for x, y in [(1, 2), (5, 1), (5, 4), (5, 2), (0, 0)]]
        ['key', 'ball', 'match', 'other', 'wall']
    """
    scenario = as_scenario(layout)
    env = make_env(MEMORY_ENV_ID, max_steps=_MAX_STEPS, one_hot=False)
    try:
        env.reset(seed=0, options=scenario.options)
        base = env.unwrapped
        cells = np.full((base.width, base.height), "empty", dtype="<U5")
        for x in range(base.width):
            for y in range(base.height):
                cell = base.grid.get(x, y)
                if cell is not None:
                    cells[x, y] = cell.type if cell.type in OBJECT_TYPES else "wall"
        cells[base.success_pos] = "match"
        cells[base.failure_pos] = "other"
    finally:
        env.close()
    return cells


def _replay(env: Any, scenario: Scenario, route: Sequence[int], pose: Pose) -> np.ndarray:
    """Raw ``[len(route) + 1, 7, 7, 3]`` views of the episode start -> route (checked to
    end at ``pose`` without ending the episode)."""
    obs, _ = env.reset(seed=0, options=scenario.options)
    images = [obs["image"]]
    for action in route:
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            raise EnvError(f"the route {route} to {pose} ends the episode in {scenario.name}")
        images.append(obs["image"])
    base = env.unwrapped
    reached = (*(int(v) for v in base.agent_pos), int(base.agent_dir))
    if reached != tuple(pose):
        raise EnvError(f"the route {route} reaches {reached}, not {pose}, in {scenario.name}")
    return np.stack(images)
