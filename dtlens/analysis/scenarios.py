"""The seed's clean/corrupt input pairs in the Memory task, and where its objects are.

The MemoryDT post patches two kinds of change: the instruction object swapped
(key <-> ball) and the RTG changed at every position. The builders here roll out a
route in ``MiniGrid-MemoryS7FixedStart-v0`` for one layout, encode it as a
:class:`~dtlens.model.TrajectoryBatch` and return a :class:`PatchingPair` with the two
actions whose logit difference is the natural metric: at the decision square (the end
of the corridor, facing the wall) the turn towards the target matching the clean
instruction (``answer_action``) versus the turn towards the other one
(``wrong_action``).

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
    >>> pair = instruction_swap_pair("key/top-ball")
    >>> pair.clean.n_steps, pair.answer_action, pair.wrong_action  # 4 padding + 5 real steps
    (9, 1, 0)
    >>> bool((pair.clean.obs != pair.corrupt.obs).any())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from dtlens.analysis.edits import (
    Obs,
    StepMask,
    _check_obs,
    patch_observation,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis.metrics import Metric, make_logit_diff_metric
from dtlens.env import (
    ACTION_INDEX,
    ACTION_NAMES,
    MEMORY_ENV_ID,
    N_ACTIONS,
    SCENARIOS,
    Scenario,
    encode_observation,
    make_env,
    object_channel,
    optimal_actions,
)
from dtlens.errors import BatchError, ConfigError, DTLensError, EnvError, ObservationError
from dtlens.model.batch import TrajectoryBatch

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "PatchingPair",
    "all_layouts",
    "instruction_swap_pair",
    "layout_batch",
    "locate_memory_objects",
    "model_instruction_pairs",
    "rtg_pair",
]

Layout = Scenario | str | tuple[str, str]
_UNSEEN, _WALL = object_channel("unseen"), object_channel("wall")
_KEY, _BALL = object_channel("key"), object_channel("ball")
_MAX_STEPS = 50


@dataclass(frozen=True)
class PatchingPair:
    """A clean and a corrupt batch differing in one fact, and the actions to compare.

    Attributes:
        clean: the clean batch.
        corrupt: the corrupt batch (same window shape).
        description: what differs, for titles and reports.
        answer_action: the action the clean input calls for (the turn towards the
            target matching the clean instruction at the decision square).
        wrong_action: the action it is compared against (the other turn).

    Raises:
        BatchError: if the two batches' windows differ in shape.
    """

    clean: TrajectoryBatch
    corrupt: TrajectoryBatch
    description: str
    answer_action: int
    wrong_action: int

    def __post_init__(self) -> None:
        shapes = [(b.obs.shape, b.actions.shape) for b in (self.clean, self.corrupt)]
        if shapes[0] != shapes[1]:
            raise BatchError(
                f"clean and corrupt batches must have the same window shape, got obs/actions "
                f"{[list(s) for s in shapes[0]]} and {[list(s) for s in shapes[1]]}"
            )

    def metric(self, model: HookedDecisionTransformer | None = None) -> Metric:
        """``logit(answer) - logit(wrong)`` at the last step, as a sweep metric.

        Examples:
            >>> instruction_swap_pair("ball/top-ball").metric().name
            'logit diff left - right at S[-1]'
        """
        return make_logit_diff_metric(self.answer_action, self.wrong_action, -1, model=model)


def all_layouts() -> tuple[Scenario, ...]:
    """The four Memory layouts (instruction x upper target), instruction-major.

    Examples:
        >>> [s.name for s in all_layouts()]
        ['key/top-key', 'key/top-ball', 'ball/top-key', 'ball/top-ball']
    """
    return SCENARIOS


def layout_batch(
    layout: Layout,
    actions: Sequence[int] | None = None,
    rtg: float = 0.9,
    n_steps: int | None = 9,
    padding: Literal["mask", "tokens"] = "tokens",
) -> TrajectoryBatch:
    """A one-row batch of a route in one layout of ``MiniGrid-MemoryS7FixedStart-v0``.

    Args:
        layout: a ``Scenario``, its name (``"key/top-ball"``) or ``(instruction, top)``.
        actions: the route from the start (default: forward to the decision square,
            the start of the optimal route). The episode must not end on the way.
        rtg: the RTG token at every step (Memory pays only at the end, so it is constant).
        n_steps: window length (default 9, MemoryDT's context); ``None`` = every
            observation of the route (``len(actions) + 1``), unpadded. A shorter window
            keeps the last ``n_steps``; a longer one is left-padded the original
            project's way (zero views, pad action ``N_ACTIONS``, timestep 0).
        padding: ``"tokens"`` (default) runs padding as ordinary tokens, as the
            original project evaluated and the seed's analyses did; ``"mask"`` keeps
            the padding mask so the model ignores padding. The original checkpoint only
            acts correctly with the default (see ``docs/analysis/edits_metrics.md``).

    Raises:
        EnvError: for an unknown layout, a bad action or a route that ends the episode.
        ConfigError: for a bad ``n_steps`` or ``padding``.

    Examples:
        >>> b = layout_batch("ball/top-key", n_steps=7)
        >>> b.timesteps.tolist(), b.actions.tolist()
        ([[0, 0, 0, 1, 2, 3, 4]], [[7, 7, 2, 2, 2, 2]])
    """
    scenario = _scenario(layout)
    route = _default_route(scenario) if actions is None else _route(actions)
    images, _ = _rollout(scenario, route)
    if padding not in ("mask", "tokens"):
        raise ConfigError(f"padding must be 'mask' or 'tokens', got {padding!r}")
    length = len(images)
    window = length if n_steps is None else n_steps
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"n_steps must be a positive int or None, got {n_steps!r}")
    keep = min(window, length)
    batch = TrajectoryBatch(
        obs=encode_observation(torch.as_tensor(images[-keep:]))[None],
        actions=torch.tensor(route[length - keep :], dtype=torch.long).reshape(1, keep - 1),
        rtg=torch.full((1, keep), float(rtg)),
        timesteps=torch.arange(length - keep, length)[None],
    )
    if window > keep:
        batch = batch.left_pad(window, pad_action=N_ACTIONS)
        if padding == "tokens":
            batch = batch.replace(padding_mask=None)
    return batch


def instruction_swap_pair(
    layout: Layout,
    n_steps: int | None = 9,
    rtg: float = 0.9,
    actions: Sequence[int] | None = None,
    *,
    padding: Literal["mask", "tokens"] = "tokens",
    answer_action: int | str | None = None,
    wrong_action: int | str | None = None,
) -> PatchingPair:
    """The seed's instruction patch: clean = a route in ``layout``, corrupt = the same
    batch with the instruction key <-> ball (``patch_observation(clean, swap_instruction())``).

    Args:
        layout: a ``Scenario``, its name or ``(instruction, top)``.
        n_steps: window length (see :func:`layout_batch`).
        rtg: the RTG token at every step.
        actions: the route (default: forward to the decision square).
        padding: ``"tokens"`` or ``"mask"`` (see :func:`layout_batch`).
        answer_action: override the clean answer (required when a custom route does
            not end at the decision square facing the wall).
        wrong_action: override the compared action (likewise).

    Raises:
        EnvError: for a bad layout/route, or a route not ending at the decision square
            without explicit actions.
        ObservationError: if no step of the window shows the instruction.

    Examples:
        >>> pair = instruction_swap_pair(("key", "key"), rtg=0.0)  # the seed's exception layout
        >>> pair.description
        'key/top-key: instruction key -> ball (RTG 0.0, 9 steps; left vs right)'
    """
    scenario = _scenario(layout)
    clean = layout_batch(scenario, actions, rtg, n_steps, padding)
    corrupt = patch_observation(clean, swap_instruction())
    if torch.equal(clean.obs, corrupt.obs):
        raise ObservationError(
            f"no step of the {clean.n_steps}-step window shows the instruction object in "
            f"{scenario.name}; use a longer window (n_steps) or a route that sees it"
        )
    answer, wrong = _decision_actions(scenario, actions, answer_action, wrong_action)
    other = "ball" if scenario.instruction == "key" else "key"
    return PatchingPair(
        clean,
        corrupt,
        f"{scenario.name}: instruction {scenario.instruction} -> {other} (RTG {rtg}, "
        f"{clean.n_steps} steps; {ACTION_NAMES[answer]} vs {ACTION_NAMES[wrong]})",
        answer,
        wrong,
    )


def model_instruction_pairs(
    model: HookedDecisionTransformer, rtg: float = 0.9
) -> list[PatchingPair]:
    """The instruction swap in each of the 4 layouts, in the window the model expects.

    Each pair is :func:`instruction_swap_pair` over the model's full context
    (``model.cfg.n_timesteps`` steps), padded the way the model asks
    (``model.context_padding``), ending at the decision square.

    Examples:
        >>> pairs = model_instruction_pairs(model, rtg=0.9)  # doctest: +SKIP
        >>> [p.clean.n_steps for p in pairs]  # doctest: +SKIP
        [9, 9, 9, 9]
    """
    return [
        instruction_swap_pair(
            s, n_steps=model.cfg.n_timesteps, rtg=rtg, padding=model.context_padding
        )
        for s in SCENARIOS
    ]


def rtg_pair(
    source: TrajectoryBatch | PatchingPair,
    clean: float = 0.9,
    corrupt: float = 0.0,
    *,
    answer_action: int | str | None = None,
    wrong_action: int | str | None = None,
) -> PatchingPair:
    """The seed's RTG patch: the same trajectory with RTG ``clean`` vs ``corrupt`` at
    every position (the in-distribution way, since Memory's RTG is constant).

    Args:
        source: a batch, or a pair whose clean batch (and actions) to reuse.
        clean: the clean RTG.
        corrupt: the corrupt RTG.
        answer_action: the compared actions; default the pair's, required for a batch.
        wrong_action: likewise.

    Raises:
        DTLensError: if ``source`` is a batch and the actions are missing.
        BatchError: if the batch has no RTG.

    Examples:
        >>> pair = rtg_pair(instruction_swap_pair("key/top-key"), clean=0.0, corrupt=0.5)
        >>> pair.clean.rtg.unique().tolist(), pair.corrupt.rtg.unique().tolist(), pair.answer_action
        ([0.0], [0.5], 0)
    """
    batch = source.clean if isinstance(source, PatchingPair) else source
    if isinstance(source, PatchingPair):
        answer_action = source.answer_action if answer_action is None else answer_action
        wrong_action = source.wrong_action if wrong_action is None else wrong_action
    if answer_action is None or wrong_action is None:
        raise DTLensError(
            "rtg_pair of a batch needs answer_action= and wrong_action= (e.g. 'left', "
            "'right'); a PatchingPair source supplies its own"
        )
    answer, wrong = _action_index(answer_action), _action_index(wrong_action)
    return PatchingPair(
        set_rtg(batch, clean),
        set_rtg(batch, corrupt),
        f"RTG {clean} -> {corrupt} at every position ({batch.n_steps} steps; "
        f"{ACTION_NAMES[answer]} vs {ACTION_NAMES[wrong]})",
        answer,
        wrong,
    )


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
        >>> obs = layout_batch("key/top-ball", n_steps=None).obs  # step 0: instruction on the left
        >>> instruction, targets = locate_memory_objects(obs)
        >>> instruction[0, 0].nonzero().tolist(), targets[0, 0].nonzero().tolist()
        ([[2, 6]], [[1, 2], [5, 2]])
    """
    _check_obs(obs)
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


def _scenario(layout: Layout) -> Scenario:
    if isinstance(layout, Scenario):
        return layout
    if isinstance(layout, tuple) and len(layout) == 2:
        return Scenario(*layout)  # validates, raising EnvError
    for scenario in SCENARIOS:
        if layout == scenario.name:
            return scenario
    raise EnvError(
        f"unknown layout {layout!r}; expected a Scenario, (instruction, top) or one of "
        f"{[s.name for s in SCENARIOS]}"
    )


def _default_route(scenario: Scenario) -> list[int]:
    """Forward to the decision square: the optimal route without its final turn + step."""
    return [int(a) for a in optimal_actions(scenario.instruction, scenario.top)[:-2]]


def _route(actions: Sequence[int]) -> list[int]:
    return [_action_index(a) for a in actions]


def _action_index(action: int | str) -> int:
    if isinstance(action, str) and action in ACTION_INDEX:
        return ACTION_INDEX[action]
    integer = not isinstance(action, bool | str) and isinstance(action, int | np.integer)
    if integer and 0 <= int(action) < N_ACTIONS:
        return int(action)
    raise EnvError(
        f"invalid action {action!r}; expected an int in 0..{N_ACTIONS - 1} or one of "
        f"{list(ACTION_NAMES)}"
    )


def _rollout(scenario: Scenario, route: list[int]) -> tuple[np.ndarray, tuple]:
    """Raw ``[T, 7, 7, 3]`` views along ``route`` and the agent's final (x, y, dir)."""
    env = make_env(MEMORY_ENV_ID, max_steps=_MAX_STEPS, one_hot=False)
    obs, _ = env.reset(seed=0, options=scenario.options)
    images = [obs["image"]]
    for i, action in enumerate(route):
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.close()
            raise EnvError(
                f"action {i} ({ACTION_NAMES[action]}) of the route ends the episode in "
                f"{scenario.name}; a route must stop before a target square so the model "
                "has a decision to make"
            )
        images.append(obs["image"])
    pose = (*(int(v) for v in env.unwrapped.agent_pos), int(env.unwrapped.agent_dir))
    env.close()
    return np.stack(images), pose


def _decision_actions(
    scenario: Scenario,
    actions: Sequence[int] | None,
    answer_action: int | str | None,
    wrong_action: int | str | None,
) -> tuple[int, int]:
    """The turns towards the matching / other target, or the caller's overrides."""
    if answer_action is not None and wrong_action is not None:
        return _action_index(answer_action), _action_index(wrong_action)
    default = _default_route(scenario)
    if actions is not None:
        at_decision = _rollout(scenario, _route(actions))[1] == _rollout(scenario, default)[1]
        if not at_decision:
            raise EnvError(
                "the route does not end at the decision square facing the wall, so the "
                "natural action pair is unknown; pass answer_action= and wrong_action="
            )
    match = int(optimal_actions(scenario.instruction, scenario.top)[len(default)])
    other = int(optimal_actions(scenario.instruction, scenario.top, to="other")[len(default)])
    answer = match if answer_action is None else _action_index(answer_action)
    wrong = other if wrong_action is None else _action_index(wrong_action)
    return answer, wrong
