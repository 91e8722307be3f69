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

from dtlens.env import ACTION_NAMES, MEMORY_ENV_ID, Scenario, encode_observation, make_env
from dtlens.errors import EnvError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

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


@torch.no_grad()
def play_greedy(
    model: HookedDecisionTransformer,
    scenario: Scenario,
    rtg: float = 0.9,
    max_steps: int = 50,
    seed: int = 0,
    env_id: str = MEMORY_ENV_ID,
) -> GreedyRun:
    """Play ``model`` greedily in one layout, recording its distribution at every step.

    The RTG token of each step is the initial ``rtg`` minus the rewards received so
    far (rewards only arrive at the end in Memory, so it stays constant). Short
    histories are padded the way the model expects (``model.pad_context``).

    Examples:
        >>> run = play_greedy(model, Scenario("ball", "ball"), rtg=0.0)  # doctest: +SKIP
        >>> run.probs.shape  # doctest: +SKIP
        torch.Size([6, 7])
    """
    if max_steps > model.cfg.max_timestep:
        raise EnvError(
            f"max_steps={max_steps} exceeds the model's time embedding "
            f"(max_timestep={model.cfg.max_timestep}); play at most that many steps."
        )
    env = make_env(env_id, max_steps=max_steps, one_hot=False)
    obs, _ = env.reset(seed=seed, options=scenario.options)
    images, actions, rtgs, probs = [obs["image"]], [], [float(rtg)], []
    reward_so_far, terminated = 0.0, False
    for _ in range(max_steps):
        history = history_batch(np.stack(images), actions, rtgs, model.cfg.n_timesteps)
        batch = model.pad_context(history)
        step_probs = model.action_logits(batch.to(model.device))[0, -1].softmax(-1).cpu()
        action = int(step_probs.argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        probs.append(step_probs)
        actions.append(action)
        images.append(obs["image"])
        reward_so_far += float(reward)
        rtgs.append(float(rtg) - reward_so_far)
        if terminated or truncated:
            break
    env.close()
    return GreedyRun(
        scenario=scenario,
        rtg=float(rtg),
        actions=actions,
        probs=torch.stack(probs),
        images=np.stack(images),
        reward=reward_so_far,
        terminated=bool(terminated),
    )
