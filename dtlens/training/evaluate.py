"""Batched rollouts: play a model in many environments at once, one forward per step.

Background:
    Evaluating a decision transformer means playing it: at every step, the model reads
    the last ``n_timesteps`` steps of history (RTG, observation, action tokens) and
    picks the next action. Playing N episodes one after another costs N x steps batch-1
    forwards; here all live episodes advance together, so each step is ONE forward
    over every live environment's context.

    All episodes start together, so at step t every live episode has a history of
    ``t + 1`` observations and the context is the last ``min(t + 1, n_timesteps)`` of
    them; shorter contexts are passed unpadded (``padding="none"``), or left-padded to
    the full window with the padding mask (``"masked"``; identical predictions by the
    model's contract), or left-padded without a mask the way the original project
    evaluated (``"original"``: zero states, padding action, the first RTG, timestep 0,
    run as ordinary tokens). The RTG token of each step is the initial RTG minus the
    rewards received so far. In the Memory task many episodes share their whole
    history (same layout, same actions), so by default identical contexts are
    forwarded once and their logits shared (``dedupe=True``; exact up to float
    rounding of different batch sizes).

    Actions: ``temperature=0`` takes the argmax (first index on ties); ``temperature >
    0`` samples from ``softmax(logits / temperature)`` by inverse CDF: the episode's own
    ``numpy.random.default_rng([ACTION_RNG_STREAM, seed])`` draws ``u ~ U[0, 1)`` each
    step and the action is the first ``a`` with ``cumsum(p)[a] > u``. Each episode's
    draws depend only on its seed, so results do not depend on batching.

Usage:
    >>> import dtlens
    >>> from dtlens.training.evaluate import rollout
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> result = rollout(model, initial_rtg=0.9, n_episodes=8, layouts="balanced")  # doctest: +SKIP
    >>> result.success.mean(), result.lengths.tolist()  # doctest: +SKIP
    (1.0, [6, 6, 6, 6, 6, 6, 6, 6])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.env import MEMORY_ENV_ID, SCENARIOS, Scenario, make_env, model_observations
from dtlens.errors import ConfigError, EnvError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "ACTION_RNG_STREAM",
    "Padding",
    "RolloutResult",
    "choose_actions",
    "make_rollout_evaluator",
    "model_padding",
    "resolve_layouts",
    "rollout",
]

#: First entry of the seed sequence of each episode's action sampler (keeps the action
#: draws independent of the environment's own RNG, which is seeded with the bare seed).
ACTION_RNG_STREAM = 1

Padding = Literal["none", "masked", "original"]
_PADDINGS = ("none", "masked", "original")
#: the rollout padding each ``model.context_padding`` asks for
_MODEL_PADDING: dict[str, Padding] = {"mask": "none", "tokens": "original"}


def model_padding(model: HookedDecisionTransformer) -> Padding:
    """The rollout ``padding`` the model expects: ``"none"`` for dtlens models (trained
    with the padding mask, so unpadded contexts are exact) and ``"original"`` for the
    original project's checkpoints (trained on padding run as tokens).

    Example:
        >>> model_padding(dtlens.load("memorydt"))  # doctest: +SKIP
        'none'
    """
    return _MODEL_PADDING[model.context_padding]


LayoutSpec = Scenario | str | Mapping[str, Any] | None


@dataclass(frozen=True)
class RolloutResult:
    """Per-episode outcomes of :func:`rollout` (episode order = input order).

    Attributes:
        rewards: total reward of each episode ``[N]``.
        lengths: steps taken ``[N]``.
        success: reward > 0 (MiniGrid rewards only success) ``[N]``.
        terminated: ended by the environment (else truncated at ``max_steps``) ``[N]``.
        initial_rtgs: the RTG each episode was conditioned on ``[N]``.
        seeds: the reset / action-sampling seed of each episode ``[N]``.
        layouts: the layout name of each episode (``info["scenario"]``; None for envs
            without scenarios).
        actions: the actions each episode took.
        rows_forwarded: model input rows over all steps (after de-duplication).
        forwards: model forward passes (one per step unless chunked by ``max_batch``).
        probs: with ``record=True``, each episode's action distribution at every step
            (``softmax`` of the logits, ``[length, n_actions]``); else None.
        images: with ``record=True``, each episode's raw ``[7, 7, 3]`` observations
            before every step plus the last one (``[length + 1, 7, 7, 3]``); else None.
    """

    rewards: Float[np.ndarray, " episode"]
    lengths: Int[np.ndarray, " episode"]
    success: Bool[np.ndarray, " episode"]
    terminated: Bool[np.ndarray, " episode"]
    initial_rtgs: Float[np.ndarray, " episode"]
    seeds: Int[np.ndarray, " episode"]
    layouts: tuple[str | None, ...]
    actions: tuple[tuple[int, ...], ...]
    rows_forwarded: int
    forwards: int
    probs: tuple[Float[Tensor, "step action"], ...] | None = None
    images: tuple[np.ndarray, ...] | None = None

    @property
    def n_episodes(self) -> int:
        """N."""
        return int(self.rewards.shape[0])


def resolve_layouts(
    layouts: Literal["balanced"] | Sequence[LayoutSpec] | None, n_episodes: int, env_id: str
) -> list[dict[str, str] | None]:
    """The ``reset`` options of each episode.

    Args:
        layouts: None (the environment draws the layout from the seed), ``"balanced"``
            (Memory only: episode i plays ``SCENARIOS[i % 4]``), or one entry per
            episode: a :class:`Scenario`, a scenario name (``"key/top-ball"``), an
            options dict, or None.
        n_episodes: N.
        env_id: the environment id (scenarios exist only for the Memory env).

    Examples:
        >>> [o["top"] for o in resolve_layouts("balanced", 3, MEMORY_ENV_ID)]
        ['key', 'ball', 'key']
    """
    if layouts is None:
        return [None] * n_episodes
    if isinstance(layouts, str) and layouts != "balanced":
        raise EnvError(
            f"layouts={layouts!r} is not understood; pass None, 'balanced' or one layout "
            "(Scenario, name like 'key/top-ball', or options dict) per episode."
        )
    if env_id != MEMORY_ENV_ID:
        raise EnvError(
            f"layouts can only be forced in {MEMORY_ENV_ID!r}, not {env_id!r}; pass layouts=None."
        )
    if layouts == "balanced":
        return [SCENARIOS[i % len(SCENARIOS)].options for i in range(n_episodes)]
    if len(layouts) != n_episodes:
        raise EnvError(f"got {len(layouts)} layouts for {n_episodes} episodes; pass one each.")
    by_name = {s.name: s for s in SCENARIOS}
    out: list[dict[str, str] | None] = []
    for layout in layouts:
        if isinstance(layout, str):
            if layout not in by_name:
                raise EnvError(f"unknown layout {layout!r}; known layouts: {sorted(by_name)}.")
            layout = by_name[layout]
        out.append(layout.options if isinstance(layout, Scenario) else layout)
    return out


def choose_actions(
    logits: Float[Tensor, "row action"], temperature: float, uniforms: np.ndarray | None
) -> Int[np.ndarray, " row"]:
    """Pick one action per row: argmax at temperature 0, else inverse-CDF sampling.

    Args:
        logits: action logits at the last state token of each row.
        temperature: 0 for greedy; > 0 samples from ``softmax(logits / temperature)``.
        uniforms: one ``U[0, 1)`` draw per row (ignored when greedy).

    Example:
        >>> logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
        >>> choose_actions(logits, 0.0, None).tolist(), choose_actions(logits, 1.0,
        ...                                                            np.array([0.6])).tolist()
        ([1], [1])
    """
    if temperature == 0:
        return logits.argmax(-1).cpu().numpy()
    probs = torch.softmax(logits.double() / temperature, dim=-1).cpu().numpy()
    cdf = np.cumsum(probs, axis=-1)
    picked = (cdf <= uniforms[:, None]).sum(-1)
    return np.minimum(picked, probs.shape[-1] - 1)


@torch.no_grad()
def rollout(
    model: HookedDecisionTransformer,
    env_id: str = MEMORY_ENV_ID,
    initial_rtg: float | Sequence[float] | np.ndarray = 0.9,
    n_episodes: int | None = None,
    seeds: int | Sequence[int] | np.ndarray = 0,
    layouts: Literal["balanced"] | Sequence[LayoutSpec] | None = None,
    temperature: float = 0.0,
    max_steps: int = 50,
    padding: Padding | None = None,
    dedupe: bool = True,
    max_batch: int = 4096,
    show_progress: bool = False,
    record: bool = False,
) -> RolloutResult:
    """Play N episodes of ``env_id`` in lockstep, one model forward for all live ones per step.

    Args:
        model: a decision transformer (or clone: RTGs are then ignored).
        env_id: a MiniGrid id (default the Memory task).
        initial_rtg: one RTG for all episodes, or one per episode.
        n_episodes: N; required when ``initial_rtg`` and ``seeds`` are scalars.
        seeds: first seed (episode i gets ``seeds + i``) or one seed per episode; seeds
            the environment's reset and the episode's action sampler.
        layouts: see :func:`resolve_layouts`.
        temperature: 0 = greedy; > 0 = sampling (see the module docstring).
        max_steps: the environment's step limit (at most ``model.cfg.max_timestep + 1``
            so every observation's timestep has an embedding).
        padding: how short contexts are given (``"none"``, ``"masked"``, ``"original"``);
            default the one the model expects (:func:`model_padding`).
        dedupe: forward identical contexts once.
        max_batch: most rows per forward (larger steps are split).
        show_progress: tqdm bar over steps.
        record: also keep every step's action distribution and every observation
            (``RolloutResult.probs`` / ``.images``).

    Returns:
        A :class:`RolloutResult`.

    Raises:
        ConfigError: inconsistent episode counts, a negative temperature, an unknown
            padding, or ``max_steps`` beyond the time embedding.
        EnvError: a bad env id or layout.

    Example:
        >>> res = rollout(  # doctest: +SKIP
        ...     model, initial_rtg=[0.0, 0.9], seeds=[3, 3], layouts="balanced")
        >>> res.success.tolist()  # doctest: +SKIP
        [False, True]
    """
    cfg = model.cfg
    if padding is None:
        padding = model_padding(model)
    rtgs, seed_arr = _episode_arrays(initial_rtg, n_episodes, seeds)
    n = rtgs.shape[0]
    _check_args(model, temperature, max_steps, padding, max_batch)
    options = resolve_layouts(layouts, n, env_id)
    envs = [make_env(env_id, max_steps=max_steps, one_hot=False) for _ in range(n)]
    first = [
        env.reset(seed=int(s), options=o) for env, s, o in zip(envs, seed_arr, options, strict=True)
    ]
    layout_names = tuple(info.get("scenario") for _, info in first)
    images = np.zeros((n, max_steps + 1, *first[0][0]["image"].shape), dtype=np.uint8)
    images[:, 0] = np.stack([obs["image"] for obs, _ in first])
    actions = np.full((n, max_steps), cfg.n_actions, dtype=np.int64)
    rtg_hist = np.zeros((n, max_steps + 1), dtype=np.float32)
    rtg_hist[:, 0] = rtgs
    rewards = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    terminated = np.zeros(n, dtype=bool)
    live = np.ones(n, dtype=bool)
    samplers = (
        [np.random.default_rng([ACTION_RNG_STREAM, int(s)]) for s in seed_arr]
        if temperature > 0
        else None
    )
    step_probs: list[list[Tensor]] = [[] for _ in range(n)]
    rows = forwards = 0
    was_training = model.training
    model.eval()
    try:
        for t in tqdm(range(max_steps), disable=not show_progress, desc="rollout", leave=False):
            idx = np.flatnonzero(live)
            if idx.size == 0:
                break
            start = max(0, t + 1 - cfg.n_timesteps)
            ctx_images = images[idx, start : t + 1]
            ctx_actions = actions[idx, start:t]
            ctx_rtg = rtg_hist[idx, start : t + 1]
            if dedupe:
                unique, inverse = _unique_rows(ctx_images, ctx_actions, ctx_rtg)
            else:
                unique, inverse = np.arange(idx.size), np.arange(idx.size)
            logits, n_fwd = _last_logits(
                model,
                ctx_images[unique],
                ctx_actions[unique],
                ctx_rtg[unique],
                start,
                padding,
                max_batch,
            )
            rows += unique.size
            forwards += n_fwd
            uniforms = None if samplers is None else np.array([samplers[i].random() for i in idx])
            row_logits = logits[torch.as_tensor(inverse)]
            chosen = choose_actions(row_logits, temperature, uniforms)
            if record:
                for i, p in zip(idx, row_logits.softmax(-1), strict=True):
                    step_probs[i].append(p)
            for i, action in zip(idx, chosen, strict=True):
                obs, reward, term, trunc, _ = envs[i].step(int(action))
                actions[i, t] = action
                images[i, t + 1] = obs["image"]
                rewards[i] += reward
                rtg_hist[i, t + 1] = rtg_hist[i, t] - reward
                lengths[i] = t + 1
                if term or trunc:
                    live[i], terminated[i] = False, bool(term)
    finally:
        model.train(was_training)
        for env in envs:
            env.close()
    return RolloutResult(
        rewards=rewards,
        lengths=lengths,
        success=rewards > 0,
        terminated=terminated,
        initial_rtgs=rtgs.astype(np.float64),
        seeds=seed_arr,
        layouts=layout_names,
        actions=tuple(tuple(int(a) for a in actions[i, : lengths[i]]) for i in range(n)),
        rows_forwarded=rows,
        forwards=forwards,
        probs=tuple(torch.stack(p) for p in step_probs) if record else None,
        images=tuple(images[i, : lengths[i] + 1] for i in range(n)) if record else None,
    )


def make_rollout_evaluator(
    env_id: str = MEMORY_ENV_ID,
    rtgs: Sequence[float] = (0.0, 0.9),
    episodes_per_rtg: int = 16,
    temperature: float = 0.0,
    max_steps: int = 50,
    seed: int = 0,
    layouts: Literal["balanced"] | None = "balanced",
) -> Callable[[HookedDecisionTransformer], dict[str, float]]:
    """An evaluator for :class:`~dtlens.training.trainer.Trainer`: success and reward per RTG.

    The returned function plays ``episodes_per_rtg`` episodes at each RTG (same seeds
    at every RTG) and returns ``{"success@0.9": ..., "reward@0.9": ..., ...}``.

    Example:
        >>> evaluate = make_rollout_evaluator(rtgs=(0.9,), episodes_per_rtg=4)
        >>> sorted(evaluate(model))  # doctest: +SKIP
        ['reward@0.9', 'success@0.9']
    """
    rtg_list = [float(r) for r in rtgs]
    if not rtg_list:
        raise ConfigError("rtgs must hold at least one RTG.")
    if isinstance(layouts, str) and layouts != "balanced":
        raise ConfigError(f"layouts={layouts!r} must be 'balanced' or None.")

    def evaluate(model: HookedDecisionTransformer) -> dict[str, float]:
        per = np.repeat(np.asarray(rtg_list), episodes_per_rtg)
        episode_seeds = np.tile(seed + np.arange(episodes_per_rtg), len(rtg_list))
        lay = (
            None
            if layouts is None
            else [SCENARIOS[j % len(SCENARIOS)] for j in range(episodes_per_rtg)] * len(rtg_list)
        )
        res = rollout(
            model,
            env_id,
            per,
            seeds=episode_seeds,
            layouts=lay,
            temperature=temperature,
            max_steps=max_steps,
        )
        out: dict[str, float] = {}
        for k, rtg in enumerate(rtg_list):
            part = slice(k * episodes_per_rtg, (k + 1) * episodes_per_rtg)
            out[f"success@{rtg:g}"] = float(res.success[part].mean())
            out[f"reward@{rtg:g}"] = float(res.rewards[part].mean())
        return out

    return evaluate


# ----------------------------------------------------------------------- helpers
def _episode_arrays(
    initial_rtg: float | Sequence[float] | np.ndarray,
    n_episodes: int | None,
    seeds: int | Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    rtgs = np.asarray(initial_rtg, dtype=np.float64)
    seed_arr = np.asarray(seeds)
    sizes = {a.shape[0] for a in (rtgs, seed_arr) if a.ndim == 1}
    if n_episodes is not None:
        if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes <= 0:
            raise ConfigError(f"n_episodes={n_episodes!r} must be a positive int.")
        sizes.add(n_episodes)
    if rtgs.ndim > 1 or seed_arr.ndim > 1:
        raise ConfigError(
            f"initial_rtg and seeds must be scalars or 1-D, got shapes {list(rtgs.shape)} "
            f"and {list(seed_arr.shape)}."
        )
    if len(sizes) != 1:
        raise ConfigError(
            "cannot tell how many episodes to play: "
            + (
                "pass n_episodes, or initial_rtg / seeds with one entry per episode."
                if not sizes
                else f"initial_rtg, seeds and n_episodes disagree ({sorted(sizes)})."
            )
        )
    n = sizes.pop()
    if n == 0:
        raise ConfigError("no episodes to play (got empty initial_rtg / seeds).")
    if not np.all(np.isfinite(rtgs)):
        raise ConfigError(
            f"initial_rtg must be finite, got {rtgs.tolist()}; pass the return to ask for "
            "as a finite number (e.g. 0.9 for success, 0.0 for failure)."
        )
    if not np.issubdtype(seed_arr.dtype, np.integer):
        raise ConfigError(f"seeds must be integers, got dtype {seed_arr.dtype}.")
    rtgs = np.broadcast_to(rtgs, (n,)).astype(np.float32)
    seed_arr = seed_arr + np.arange(n) if seed_arr.ndim == 0 else seed_arr
    if np.any(seed_arr < 0):
        raise ConfigError(f"seeds must be >= 0, got {seed_arr.tolist()}.")
    return rtgs, seed_arr.astype(np.int64)


def _check_args(
    model: HookedDecisionTransformer,
    temperature: float,
    max_steps: int,
    padding: str,
    max_batch: int,
) -> None:
    if not isinstance(temperature, int | float) or not np.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature={temperature!r} must be a finite number >= 0.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
        raise ConfigError(f"max_steps={max_steps!r} must be a positive int.")
    if max_steps > model.cfg.max_timestep + 1:
        raise ConfigError(
            f"max_steps={max_steps} needs timesteps up to {max_steps - 1}, beyond the model's "
            f"time embedding (max_timestep={model.cfg.max_timestep})."
        )
    if padding not in _PADDINGS:
        raise ConfigError(f"padding={padding!r} must be one of {_PADDINGS}.")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch <= 0:
        raise ConfigError(f"max_batch={max_batch!r} must be a positive int.")
    obs_channels = model.cfg.obs_shape[-1]
    if obs_channels not in (3, 20):
        raise ConfigError(
            f"rollouts feed MiniGrid views as one-hot [7, 7, 20] or raw [7, 7, 3]; the model "
            f"reads obs_shape={list(model.cfg.obs_shape)}."
        )


def _unique_rows(
    images: np.ndarray, actions: np.ndarray, rtg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each distinct context, and each row's group."""
    m = images.shape[0]
    key = np.concatenate(
        [images.reshape(m, -1), actions.astype(np.uint8), rtg.view(np.uint8).reshape(m, -1)],
        axis=1,
    )
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _last_logits(
    model: HookedDecisionTransformer,
    images: np.ndarray,
    actions: np.ndarray,
    rtg: np.ndarray,
    start: int,
    padding: str,
    max_batch: int,
) -> tuple[Float[Tensor, "row action"], int]:
    """Logits of the last state token of each context row, in chunks of ``max_batch``."""
    device = model.device
    raw = torch.from_numpy(images)
    obs = model_observations(raw, model.cfg.one_hot_obs)
    m, w = images.shape[:2]
    batch = TrajectoryBatch(
        obs=obs,
        actions=torch.from_numpy(actions),
        rtg=torch.from_numpy(rtg).float(),
        timesteps=torch.arange(start, start + w).repeat(m, 1),
    )
    if padding != "none" and w < model.cfg.n_timesteps:
        batch = batch.left_pad(model.cfg.n_timesteps, pad_action=model.cfg.n_actions)
        if padding == "original":
            batch = batch.replace(padding_mask=None)
    outs = [
        model.action_logits(batch[lo : lo + max_batch].to(device))[:, -1]
        for lo in range(0, m, max_batch)
    ]
    return torch.cat(outs).float().cpu(), len(outs)
