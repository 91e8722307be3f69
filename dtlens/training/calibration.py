"""RTG calibration: how much reward a decision transformer gets for the reward it is asked for.

Background:
    A decision transformer is conditioned on a return-to-go (RTG). A calibrated model
    achieves about the reward it is asked for, within what its training data
    demonstrated (the MemoryDT post's Figure 4). :func:`calibration_curve` plays
    ``episodes_per_rtg`` episodes at every RTG in one batched rollout
    (:func:`dtlens.training.evaluate.rollout`) and returns a :class:`CalibrationResult`
    holding every episode's reward, success and length.

    Episode j of every RTG uses seed ``seed + j`` (and, by default, layout
    ``SCENARIOS[j % 4]``), so RTGs are compared on the same episodes.

    Confidence bands (95%, two-sided):

    * mean reward: normal approximation, ``mean ± 1.96 · s / √N`` with the sample
      standard deviation ``s`` (``N - 1`` denominator), the band
      :func:`dtlens.plotting.calibration.plot_calibration` draws;
    * success rate: Wilson score interval, which stays inside [0, 1] and is not
      degenerate at rates of 0 or 1 (where the normal approximation gives a zero-width
      band).

Usage:
    >>> import dtlens
    >>> from dtlens.training.calibration import calibration_curve
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> result = calibration_curve(model, episodes_per_rtg=100)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from jaxtyping import Bool, Float, Int

from dtlens.env import MEMORY_ENV_ID, SCENARIOS
from dtlens.errors import ConfigError
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.training.evaluate import Padding, model_padding, rollout

__all__ = ["Z_95", "CalibrationResult", "calibration_curve", "wilson_interval"]

#: z of a two-sided 95% normal interval.
Z_95 = 1.959963984540054


def wilson_interval(
    successes: Int[np.ndarray, "*shape"] | int, trials: int, z: float = Z_95
) -> tuple[Float[np.ndarray, "*shape"], Float[np.ndarray, "*shape"]] | tuple[float, float]:
    """Wilson score interval for a binomial proportion (lower, upper).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes / n``,
    exact at the ends: the lower bound is 0 at 0 successes and the upper bound 1 at n.
    The one implementation in dtlens: calibration success rates (arrays of counts) and
    probe accuracies (:func:`dtlens.analysis.probes.fit_probe`, one count) use it.

    Args:
        successes: a count or an array of counts, each in ``0..trials``.
        trials: n, a positive int.
        z: the normal quantile (default two-sided 95 %).

    Returns:
        ``(low, high)``: floats for a single count, arrays of its shape for an array.

    Raises:
        ConfigError: ``trials`` is not a positive int, or a count is outside ``0..trials``.

    Examples:
        >>> lo, hi = wilson_interval(0, 10)
        >>> round(float(lo), 4), round(float(hi), 4)
        (0.0, 0.2775)
        >>> [v.round(3).tolist() for v in wilson_interval(np.array([9, 10]), 10)]
        [[0.596, 0.722], [0.982, 1.0]]
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0:
        raise ConfigError(f"trials={trials!r} must be a positive int.")
    counts = np.asarray(successes)
    if counts.size and not (np.all(counts >= 0) and np.all(counts <= trials)):
        raise ConfigError(
            f"wilson_interval needs 0 <= successes <= trials={trials}, got {successes!r}."
        )
    p = counts.astype(np.float64) / trials
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * np.sqrt(p * (1 - p) / trials + z2n / (4 * trials)) / (1 + z2n)
    low = np.where(counts == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(counts == trials, 1.0, np.clip(centre + half, 0.0, 1.0))
    if counts.ndim == 0:
        return float(low), float(high)
    return low, high


@dataclass(frozen=True)
class CalibrationResult:
    """Rewards, successes and lengths of N episodes at each of R RTGs.

    Attributes:
        rtgs: the RTGs asked ``[R]``.
        rewards: reward of episode j at RTG i ``[R, N]``.
        success: whether it reached the rewarded target ``[R, N]``.
        lengths: its length in steps ``[R, N]``.
        layouts: the layout name of episode j (the same at every RTG) ``[N]``.
        settings: how the episodes were played (env id, temperature, seed, ...).
    """

    rtgs: Float[np.ndarray, " rtg"]
    rewards: Float[np.ndarray, "rtg episode"]
    success: Bool[np.ndarray, "rtg episode"]
    lengths: Int[np.ndarray, "rtg episode"]
    layouts: tuple[str | None, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_rtg = np.asarray(self.rtgs).shape
        shapes = {
            name: np.asarray(getattr(self, name)).shape
            for name in ("rewards", "success", "lengths")
        }
        first = shapes["rewards"]
        if (
            len(n_rtg) != 1
            or len(first) != 2
            or first[0] != n_rtg[0]
            or any(s != first for s in shapes.values())
        ):
            raise ConfigError(
                f"CalibrationResult needs rtgs [R] and rewards / success / lengths [R, N] of "
                f"one shape; got rtgs {list(n_rtg)} and "
                f"{ {k: list(v) for k, v in shapes.items()} }."
            )

    @property
    def n_episodes(self) -> int:
        """N, episodes per RTG."""
        return int(self.rewards.shape[1])

    @property
    def mean_reward(self) -> Float[np.ndarray, " rtg"]:
        """Mean reward per RTG."""
        return self.rewards.mean(axis=1)

    @property
    def success_rate(self) -> Float[np.ndarray, " rtg"]:
        """Fraction of successful episodes per RTG."""
        return self.success.mean(axis=1)

    @property
    def mean_length(self) -> Float[np.ndarray, " rtg"]:
        """Mean episode length per RTG."""
        return self.lengths.mean(axis=1)

    def reward_ci(self) -> tuple[Float[np.ndarray, " rtg"], Float[np.ndarray, " rtg"]]:
        """95% normal-approximation band of the mean reward (zero width when N = 1)."""
        n = self.n_episodes
        sd = self.rewards.std(axis=1, ddof=1) if n > 1 else np.zeros(len(self.rtgs))
        half = Z_95 * sd / math.sqrt(n)
        return self.mean_reward - half, self.mean_reward + half

    def success_ci(self) -> tuple[Float[np.ndarray, " rtg"], Float[np.ndarray, " rtg"]]:
        """95% Wilson score interval of the success rate."""
        return wilson_interval(self.success.sum(axis=1), self.n_episodes)

    def at(self, rtg: float) -> int:
        """Row index of ``rtg`` (to 1e-9); ConfigError if it was not evaluated.

        Example:
            >>> result.success_rate[result.at(0.9)]  # doctest: +SKIP
        """
        hits = np.flatnonzero(np.abs(np.asarray(self.rtgs) - rtg) < 1e-9)
        if hits.size == 0:
            raise ConfigError(f"RTG {rtg} was not evaluated; RTGs: {list(map(float, self.rtgs))}.")
        return int(hits[0])

    def success_by_layout(self, rtg: float) -> dict[str, float]:
        """Success rate at ``rtg`` in each Memory layout, in :data:`~dtlens.env.SCENARIOS`
        order, from the layout each episode played (``layouts``); NaN for a layout that no
        episode played.

        Raises:
            ConfigError: ``rtg`` was not evaluated, or ``layouts`` does not name one
                layout per episode.

        Example:
            >>> from dtlens.env import SCENARIOS
            >>> names = [s.name for s in SCENARIOS]
            >>> result = CalibrationResult(
            ...     rtgs=np.array([0.9]), rewards=np.zeros((1, 5)),
            ...     success=np.array([[True, False, True, True, False]]),
            ...     lengths=np.full((1, 5), 6), layouts=(*names, names[0]))
            >>> result.success_by_layout(0.9)
            {'key/top-key': 0.5, 'key/top-ball': 0.0, 'ball/top-key': 1.0, 'ball/top-ball': 1.0}
        """
        if len(self.layouts) != self.n_episodes:
            raise ConfigError(
                f"success per layout needs the layout of each of the {self.n_episodes} "
                f"episodes; this result records {len(self.layouts)} (layouts)."
            )
        row = np.asarray(self.success[self.at(rtg)], dtype=np.float64)
        played = np.asarray(self.layouts, dtype=object)
        rates = {}
        for scenario in SCENARIOS:
            mine = played == scenario.name
            rates[scenario.name] = float(row[mine].mean()) if mine.any() else math.nan
        return rates

    def table(self) -> str:
        """A Markdown table: RTG, success rate (Wilson 95%), mean reward (± 95%), mean length."""
        s_lo, s_hi = self.success_ci()
        r_lo, r_hi = self.reward_ci()
        lines = [
            "| RTG | success rate | 95% CI (Wilson) | mean reward | 95% CI (normal) "
            "| mean length |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for i, rtg in enumerate(self.rtgs):
            lines.append(
                f"| {rtg:.2f} | {self.success_rate[i]:.3f} | [{s_lo[i]:.3f}, {s_hi[i]:.3f}] "
                f"| {self.mean_reward[i]:.3f} | [{r_lo[i]:.3f}, {r_hi[i]:.3f}] "
                f"| {self.mean_length[i]:.1f} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the raw per-episode arrays plus the per-RTG summary."""
        s_lo, s_hi = self.success_ci()
        r_lo, r_hi = self.reward_ci()
        return {
            "rtgs": [float(x) for x in self.rtgs],
            "n_episodes": self.n_episodes,
            "summary": {
                "success_rate": self.success_rate.tolist(),
                "success_ci95_wilson": [s_lo.tolist(), s_hi.tolist()],
                "mean_reward": self.mean_reward.tolist(),
                "reward_ci95_normal": [r_lo.tolist(), r_hi.tolist()],
                "mean_length": self.mean_length.tolist(),
            },
            "rewards": np.round(self.rewards, 6).tolist(),
            "success": self.success.astype(bool).tolist(),
            "lengths": self.lengths.astype(int).tolist(),
            "layouts": list(self.layouts),
            "settings": self.settings,
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string (read back with :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> CalibrationResult:
        """Inverse of :meth:`to_json`.

        Example:
            >>> CalibrationResult.from_json(result.to_json()).success_rate  # doctest: +SKIP
        """
        data = json.loads(text)
        return cls(
            rtgs=np.asarray(data["rtgs"], dtype=np.float64),
            rewards=np.asarray(data["rewards"], dtype=np.float64),
            success=np.asarray(data["success"], dtype=bool),
            lengths=np.asarray(data["lengths"], dtype=np.int64),
            layouts=tuple(data.get("layouts", ())),
            settings=dict(data.get("settings", {})),
        )


def calibration_curve(
    model: HookedDecisionTransformer,
    rtgs: Sequence[float] | np.ndarray | None = None,
    episodes_per_rtg: int = 100,
    env_id: str = MEMORY_ENV_ID,
    temperature: float = 0.0,
    max_steps: int = 50,
    seed: int = 0,
    layouts: Literal["balanced"] | None = "balanced",
    padding: Padding | None = None,
    show_progress: bool = False,
) -> CalibrationResult:
    """Play ``episodes_per_rtg`` episodes at every RTG, all in one batched rollout.

    Args:
        model: the decision transformer.
        rtgs: RTGs to ask for (default ``np.linspace(0, 1, 11)``).
        episodes_per_rtg: N.
        env_id: the environment (default the Memory task).
        temperature: 0 = greedy actions; > 0 = sampling.
        max_steps: the environment's step limit.
        seed: episode j of every RTG uses seed ``seed + j``.
        layouts: ``"balanced"`` (episode j plays ``SCENARIOS[j % 4]``; Memory only) or
            None (layouts drawn from the seeds).
        padding: how short contexts are fed (see :func:`~dtlens.training.evaluate.rollout`);
            default the one the model expects (``model.context_padding``: unpadded for
            dtlens models, padding run as tokens for original checkpoints).
        show_progress: tqdm bar over steps.

    Example:
        >>> result = calibration_curve(model, rtgs=[0.0, 0.9], episodes_per_rtg=8)  # doctest: +SKIP
        >>> result.rewards.shape  # doctest: +SKIP
        (2, 8)
    """
    grid = np.linspace(0.0, 1.0, 11) if rtgs is None else np.asarray(rtgs, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ConfigError(f"rtgs must be a non-empty 1-D list of finite numbers, got {rtgs!r}.")
    if (
        isinstance(episodes_per_rtg, bool)
        or not isinstance(episodes_per_rtg, int)
        or (episodes_per_rtg <= 0)
    ):
        raise ConfigError(f"episodes_per_rtg={episodes_per_rtg!r} must be a positive int.")
    if layouts not in ("balanced", None):
        raise ConfigError(f"layouts={layouts!r} must be 'balanced' or None.")
    n_rtg, n = grid.size, episodes_per_rtg
    if padding is None:
        padding = model_padding(model)
    per_episode_layouts = (
        None if layouts is None else [SCENARIOS[j % len(SCENARIOS)] for j in range(n)] * n_rtg
    )
    result = rollout(
        model,
        env_id,
        initial_rtg=np.repeat(grid, n),
        seeds=np.tile(seed + np.arange(n), n_rtg),
        layouts=per_episode_layouts,
        temperature=temperature,
        max_steps=max_steps,
        padding=padding,
        show_progress=show_progress,
    )
    settings = {
        "env_id": env_id,
        "temperature": float(temperature),
        "max_steps": max_steps,
        "seed": seed,
        "layouts": layouts,
        "padding": padding,
        "seeds": f"episode j of every RTG uses seed {seed} + j",
    }
    return CalibrationResult(
        rtgs=grid,
        rewards=result.rewards.reshape(n_rtg, n),
        success=result.success.reshape(n_rtg, n),
        lengths=result.lengths.reshape(n_rtg, n),
        layouts=result.layouts[:n],
        settings=settings,
    )
