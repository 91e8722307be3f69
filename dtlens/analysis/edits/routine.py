"""The model's "set routine": its greedy trajectory in a layout, with its preferences at each step.

Background:
    The MemoryDT post observed that the model walks a fixed routine (forward to the end
    of the corridor, turn towards the target matching the instruction, step onto it)
    with disproportionately high confidence, and that with RTG 0 it turns the other
    way. This module plays a model greedily in one layout of the Memory task — each
    step, one forward on the last ``n_timesteps`` steps of history, argmax action —
    and records the full action distribution at every step, so the routine, its
    confidence and the decision square can be read off.

Examples:
    >>> import dtlens
    >>> from dtlens.env import Scenario
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> run = play_greedy(model, Scenario("key", "ball"), rtg=0.9)  # doctest: +SKIP
    >>> run.action_names, run.reward  # doctest: +SKIP
    (['forward', 'forward', 'forward', 'forward', 'right', 'forward'], 0.892)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.env import ACTION_NAMES, MEMORY_ENV_ID, Scenario, encode_observation
from dtlens.env.scenarios import as_scenario
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.training.evaluate import RolloutResult, rollout

__all__ = ["GreedyRun", "history_batch", "play_greedy"]


@dataclass(frozen=True)
class GreedyRun:
    """One greedy episode of a model in one layout.

    Attributes:
        scenario: the layout played.
        rtg: the return-to-go the model was conditioned on at the first step.
        actions: the action chosen at each step.
        probs: the model's action distribution at each step ``[steps, n_actions]``.
        images: the raw ``[7, 7, 3]`` observation before each step, plus the last one.
        reward: the episode's reward (0 unless the matching target was reached).
        terminated: whether the episode ended at a target (else it was truncated).
    """

    scenario: Scenario
    rtg: float
    actions: list[int]
    probs: Float[Tensor, "step action"]
    images: np.ndarray
    reward: float
    terminated: bool

    @classmethod
    def from_rollout(
        cls, result: RolloutResult, index: int = 0, rtg: float | None = None
    ) -> GreedyRun:
        """Episode ``index`` of a :func:`~dtlens.training.evaluate.rollout` run with
        ``record=True`` in the Memory layouts.

        ``rtg`` is the initial RTG asked for (default: ``result.initial_rtgs[index]``,
        which holds it as played, rounded to the model's float32).

        Raises:
            ConfigError: the rollout was not recorded (``record=False``), or the
                episode has no layout (an env without scenarios).

        Examples:
            >>> from dtlens.training.evaluate import RolloutResult, rollout
            >>> result = rollout(model, MEMORY_ENV_ID, initial_rtg=[0.9], seeds=[0],
            ...                  layouts=["ball/top-key"], max_steps=3, record=True)
            >>> run = GreedyRun.from_rollout(result, 0, rtg=0.9)
            >>> run.scenario.name, run.rtg, len(run.images) == len(run.actions) + 1
            ('ball/top-key', 0.9, True)
        """
        if result.probs is None or result.images is None:
            raise ConfigError("GreedyRun.from_rollout needs a rollout run with record=True.")
        layout = result.layouts[index]
        if layout is None:
            raise ConfigError(f"episode {index} of the rollout has no layout (no scenarios).")
        return cls(
            scenario=as_scenario(layout),
            rtg=float(result.initial_rtgs[index] if rtg is None else rtg),
            actions=list(result.actions[index]),
            probs=result.probs[index],
            images=result.images[index],
            reward=float(result.rewards[index]),
            terminated=bool(result.terminated[index]),
        )

    @property
    def action_names(self) -> list[str]:
        """The chosen actions by name."""
        return [ACTION_NAMES[a] for a in self.actions]

    @property
    def confidence(self) -> Float[Tensor, " step"]:
        """Probability the model gave to the action it took, per step."""
        return self.probs[torch.arange(len(self.actions)), torch.tensor(self.actions)]


def history_batch(
    images: np.ndarray | Tensor,
    actions: list[int],
    rtgs: list[float],
    window: int,
) -> TrajectoryBatch:
    """A one-row batch of the last ``window`` steps of an episode's history.

    Args:
        images: raw ``[T, 7, 7, 3]`` observations so far (T = steps taken + 1).
        actions: the T - 1 actions taken so far.
        rtgs: the T returns-to-go (the RTG token of each step).
        window: the model's context in timesteps (``model.cfg.n_timesteps``).

    Examples:
        >>> import numpy as np
        >>> b = history_batch(np.zeros((3, 7, 7, 3), dtype=np.uint8), [2, 2], [0.9] * 3, window=2)
        >>> b.timesteps.tolist(), b.actions.tolist()
        ([[1, 2]], [[2]])
    """
    n_steps = len(rtgs)
    start = max(0, n_steps - window)
    obs = encode_observation(torch.as_tensor(np.asarray(images[start:n_steps])))
    return TrajectoryBatch(
        obs=obs[None],
        actions=torch.tensor(actions[start : n_steps - 1], dtype=torch.long)[None],
        rtg=torch.tensor(rtgs[start:n_steps], dtype=torch.float32)[None],
        timesteps=torch.arange(start, n_steps)[None],
    )


def play_greedy(
    model: HookedDecisionTransformer,
    scenario: Scenario,
    rtg: float = 0.9,
    max_steps: int = 50,
    seed: int = 0,
    env_id: str = MEMORY_ENV_ID,
) -> GreedyRun:
    """Play ``model`` greedily in one layout, recording its distribution at every step.

    One episode of :func:`dtlens.training.evaluate.rollout` (the one play loop of
    dtlens) with ``record=True``: the RTG token of each step is the initial ``rtg``
    minus the rewards received so far (rewards only arrive at the end in Memory, so
    it stays constant), and short histories are given the way the model expects
    (``model.context_padding``).

    Raises:
        ConfigError: ``max_steps`` not a positive int, or beyond the model's time
            embedding (more than ``model.cfg.max_timestep + 1`` steps).

    Examples:
        >>> run = play_greedy(model, Scenario("ball", "ball"), rtg=0.0)  # doctest: +SKIP
        >>> run.probs.shape  # doctest: +SKIP
        torch.Size([6, 7])
    """
    result = rollout(
        model, env_id, initial_rtg=[float(rtg)], seeds=[seed], layouts=[scenario],
        max_steps=max_steps, record=True,
    )  # fmt: skip
    return GreedyRun.from_rollout(result, 0, rtg=float(rtg))
