"""The seed's clean/corrupt input pairs in the Memory task, and where its objects are.

The MemoryDT post patches two kinds of change: the instruction object swapped
(key <-> ball) and the RTG changed at every position. The builders here roll out a
route in ``MiniGrid-MemoryS7FixedStart-v0`` for one layout, encode it as a
:class:`~dtlens.model.TrajectoryBatch` and return a :class:`PatchingPair` with the two
actions whose logit difference is the natural metric: at the decision square (the end
of the corridor, facing the wall) the turn towards the target matching the clean
instruction (``answer_action``) versus the turn towards the other one
(``wrong_action``).

Where the instruction and targets are in a view is found by
:func:`dtlens.env.views.locate_memory_objects`.

Padding follows the model: a window longer than the route is left-padded, and how the
padding is fed (masked, or run as ordinary tokens) changes a model's decision, so pass
the model (``model=``: its :attr:`~dtlens.model.HookedDecisionTransformer.context_padding`
is used) or name the padding (``padding="mask"`` / ``"tokens"``). A padded window with
neither raises :class:`~dtlens.errors.ConfigError` rather than guess.

Examples:
    >>> pair = instruction_swap_pair("key/top-ball", padding="mask")
    >>> pair.clean.n_steps, pair.answer_action, pair.wrong_action  # 4 padding + 5 real steps
    (9, 1, 0)
    >>> bool((pair.clean.obs != pair.corrupt.obs).any())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from dtlens.analysis.edits.observations import (
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
    optimal_actions,
)
from dtlens.env.scenarios import as_scenario
from dtlens.errors import BatchError, ConfigError, DTLensError, EnvError, ObservationError
from dtlens.model.batch import TrajectoryBatch

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "PatchingPair",
    "all_layouts",
    "instruction_swap_pair",
    "layout_batch",
    "model_instruction_pairs",
    "resolve_padding",
    "rtg_pair",
]

Layout = Scenario | str | tuple[str, str]
Padding = Literal["mask", "tokens"]
_PADDINGS = ("mask", "tokens")
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
            >>> instruction_swap_pair("ball/top-ball", padding="mask").metric().name
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


def resolve_padding(
    padding: Padding | None,
    model: HookedDecisionTransformer | None,
    n_padding: int = 1,
    what: str = "the window",
) -> Padding:
    """The padding a window is built with: the one named, else the model's.

    Args:
        padding: ``"mask"``, ``"tokens"`` or ``None`` (ask the model).
        model: the model the window is for, or None.
        n_padding: how many padding steps the window has; with none, the padding
            does not matter and ``"mask"`` is returned when nothing says otherwise.
        what: the window, for the error message.

    Raises:
        ConfigError: an unknown ``padding``, or a padded window with neither a padding
            nor a model (the choice changes the decision, so it is never guessed).

    Examples:
        >>> resolve_padding("tokens", None), resolve_padding(None, None, n_padding=0)
        ('tokens', 'mask')
        >>> resolve_padding(None, dtlens.load("memorydt"))  # doctest: +SKIP
        'mask'
    """
    if padding is not None:
        if padding not in _PADDINGS:
            raise ConfigError(f"padding must be 'mask' or 'tokens', got {padding!r}")
        return padding
    if model is not None:
        return model.context_padding
    if n_padding <= 0:
        return "mask"
    raise ConfigError(
        f"{what} has {n_padding} padding step(s), and whether they are masked or run as "
        "tokens changes the model's decision: pass model= (its context_padding is used) "
        "or padding='mask' (models dtlens trains) / padding='tokens' (the original "
        "project's checkpoints)"
    )


def layout_batch(
    layout: Layout,
    actions: Sequence[int] | None = None,
    rtg: float = 0.9,
    n_steps: int | None = 9,
    padding: Padding | None = None,
    *,
    model: HookedDecisionTransformer | None = None,
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
        padding: how padding steps are fed: ``"mask"`` keeps the padding mask so the
            model ignores them (models dtlens trains); ``"tokens"`` runs them as
            ordinary tokens, as the original project trained and evaluated (its
            checkpoints act correctly only so). ``None`` (default): the model's
            (``model.context_padding``). A named padding wins over the model's.
        model: the model the window is for; its ``context_padding`` is the default.

    Raises:
        EnvError: for an unknown layout, a bad action or a route that ends the episode.
        ConfigError: for a bad ``n_steps`` or ``padding``, or a window that needs
            padding with neither ``padding`` nor ``model`` given.

    Examples:
        >>> b = layout_batch("ball/top-key", n_steps=7, padding="tokens")
        >>> b.timesteps.tolist(), b.actions.tolist(), b.padding_mask
        ([[0, 0, 0, 1, 2, 3, 4]], [[7, 7, 2, 2, 2, 2]], None)
        >>> layout_batch("ball/top-key", n_steps=None).n_steps  # unpadded: no padding to pick
        5
        >>> layout_batch("ball/top-key", model=model).padding_mask  # doctest: +SKIP
        tensor([[False, False, False, False,  True,  True,  True,  True,  True]])
    """
    scenario = _scenario(layout)
    route = _default_route(scenario) if actions is None else _route(actions)
    images, _ = _rollout(scenario, route)
    length = len(images)
    window = length if n_steps is None else n_steps
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"n_steps must be a positive int or None, got {n_steps!r}")
    keep = min(window, length)
    padding = resolve_padding(
        padding, model, window - keep, f"the {window}-step window of {scenario.name}"
    )
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
    padding: Padding | None = None,
    model: HookedDecisionTransformer | None = None,
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
        padding: ``"mask"``, ``"tokens"`` or ``None`` = the model's (see
            :func:`layout_batch`).
        model: the model the pair is for (its padding is the default).
        answer_action: override the clean answer (required when a custom route does
            not end at the decision square facing the wall).
        wrong_action: override the compared action (likewise).

    Raises:
        EnvError: for a bad layout/route, or a route not ending at the decision square
            without explicit actions.
        ObservationError: if no step of the window shows the instruction.
        ConfigError: a padded window with neither ``padding`` nor ``model``.

    Examples:
        >>> pair = instruction_swap_pair(("key", "key"), rtg=0.0, padding="tokens")  # the exception
        >>> pair.description
        'key/top-key: instruction key -> ball (RTG 0.0, 9 steps; left vs right)'
    """
    scenario = _scenario(layout)
    clean = layout_batch(scenario, actions, rtg, n_steps, padding, model=model)
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
        instruction_swap_pair(s, n_steps=model.cfg.n_timesteps, rtg=rtg, model=model)
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
    every position (the in-distribution way, since Memory's RTG is constant). The
    batches keep the source's padding (masked or run as tokens).

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
        >>> source = instruction_swap_pair("key/top-key", padding="mask")
        >>> pair = rtg_pair(source, clean=0.0, corrupt=0.5)
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


def _scenario(layout: Layout) -> Scenario:
    return as_scenario(layout)


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
