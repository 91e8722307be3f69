"""Vectorised MiniGrid envs with raw image observations, and agent evaluation on them.

Background:
    Agents (:mod:`dtlens.data.agents`) read MiniGrid's raw ``[7, 7, 3]`` index image.
    :func:`make_vector_env` builds a ``gymnasium.vector.SyncVectorEnv`` whose
    observation is that image (the ``direction``/``mission`` entries are dropped) and
    which auto-resets in the same step (``AutoresetMode.SAME_STEP``): the observation
    returned with ``terminated | truncated`` is already the next episode's first one,
    so "done" at step t means "reset the recurrent state before step t + 1".
    :func:`play_episodes` plays an agent for a fixed number of episodes per env
    (no bias towards short episodes) with temperature / greedy / top-k sampling.

Usage:
    >>> from dtlens.data.agents import load_original_lstm  # doctest: +SKIP
    >>> agent = load_original_lstm("../shared/checkpoints/dti_memory_ppo_lstm.pt")  # doctest: +SKIP
    >>> stats = play_episodes(agent, "MiniGrid-MemoryS7FixedStart-v0", n_episodes=200,
    ...                       temperature=1.0, seed=0)  # doctest: +SKIP
    >>> stats.success_rate  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from jaxtyping import Bool, Float, Int, UInt8
from minigrid.wrappers import ImgObsWrapper
from torch import Tensor

from dtlens.data.agents.base import Agent, check_sampling, sample_actions
from dtlens.data.agents.lstm import LSTMAgent
from dtlens.env import make_env
from dtlens.errors import ConfigError, EnvError

__all__ = [
    "EnvSource",
    "EpisodeStats",
    "EpisodeTracker",
    "Segment",
    "SegmentCollector",
    "make_vector_env",
    "play_episodes",
]

#: An env id (e.g. ``"MiniGrid-MemoryS7FixedStart-v0"``) or a zero-argument env factory.
EnvSource = str | Callable[[], gymnasium.Env]


def _image_only(env: gymnasium.Env) -> gymnasium.Env:
    space = env.observation_space
    if isinstance(space, spaces.Dict) and "image" in space.spaces:
        env = ImgObsWrapper(env)
        space = env.observation_space
    if not isinstance(space, spaces.Box) or tuple(space.shape) != (7, 7, 3):
        raise EnvError(
            f"agents need raw [7, 7, 3] image observations (or a Dict with such an 'image'), "
            f"got observation space {space}"
        )
    if not isinstance(env.action_space, spaces.Discrete):
        raise EnvError(f"agents need a Discrete action space, got {env.action_space}")
    return env


def make_vector_env(env: EnvSource, n_envs: int, max_steps: int | None = None) -> SyncVectorEnv:
    """``n_envs`` copies of an env with raw image observations and same-step auto-reset.

    Args:
        env: A registered MiniGrid id (built by :func:`dtlens.env.make_env` with raw
            images) or a factory returning an env whose observations are ``[7, 7, 3]``
            images or Dicts holding one under ``"image"``.
        n_envs: Number of environments.
        max_steps: Episode length limit for an env id (``None``: the env's default).
            Ignored for factories.

    Raises:
        ConfigError: ``n_envs`` is not a positive int.
        EnvError: Unknown id, or observations that are not ``[7, 7, 3]`` images.

    Example:
        >>> from dtlens.training.probe_envs import CueRecallEnv
        >>> envs = make_vector_env(CueRecallEnv, n_envs=3)
        >>> envs.reset(seed=0)[0].shape
        (3, 7, 7, 3)
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs <= 0:
        raise ConfigError(f"n_envs must be a positive int, got {n_envs!r}")
    if isinstance(env, str):
        env_id = env

        def factory() -> gymnasium.Env:
            return make_env(env_id, max_steps=max_steps, one_hot=False)

    elif callable(env):
        factory = env
    else:
        raise EnvError(f"env must be an env id string or a factory, got {type(env).__name__}")
    _image_only(factory()).close()  # fail here, with a clear message, not inside gymnasium
    return SyncVectorEnv(
        [lambda: _image_only(factory()) for _ in range(n_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


@dataclass(frozen=True)
class EpisodeStats:
    """Returns and lengths of finished episodes.

    Attributes:
        returns: Undiscounted return of each episode.
        lengths: Steps of each episode.

    Example:
        >>> stats = EpisodeStats(np.array([0.9, 0.0]), np.array([6, 50]))
        >>> stats.success_rate, round(stats.mean_return, 2), stats.n_episodes
        (0.5, 0.45, 2)
    """

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def n_episodes(self) -> int:
        """Number of episodes."""
        return len(self.returns)

    @property
    def mean_return(self) -> float:
        """Mean return (NaN without episodes)."""
        return float(np.mean(self.returns)) if len(self.returns) else float("nan")

    @property
    def success_rate(self) -> float:
        """Fraction of episodes with a positive return (in Memory: reached the right target)."""
        return float(np.mean(self.returns > 0)) if len(self.returns) else float("nan")

    @property
    def mean_length(self) -> float:
        """Mean episode length (NaN without episodes)."""
        return float(np.mean(self.lengths)) if len(self.lengths) else float("nan")


class EpisodeTracker:
    """Accumulates per-env returns and lengths across vector-env steps.

    Example:
        >>> tracker = EpisodeTracker(2)
        >>> tracker.update(np.array([0.0, 1.0]), np.array([False, True]))
        [(1, 1.0, 1)]
        >>> tracker.update(np.array([0.5, 0.0]), np.array([True, False]))
        [(0, 0.5, 2)]
        >>> tracker.pop().returns.tolist(), tracker.pop().n_episodes
        ([1.0, 0.5], 0)
    """

    def __init__(self, n_envs: int):
        self._returns = np.zeros(n_envs)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._done_returns: list[float] = []
        self._done_lengths: list[int] = []

    def update(self, rewards: np.ndarray, dones: np.ndarray) -> list[tuple[int, float, int]]:
        """Add one step's rewards; close episodes where ``dones`` is True.

        Returns:
            ``(env index, return, length)`` of each episode that ended at this step.
        """
        self._returns += rewards
        self._lengths += 1
        ended = []
        for i in np.flatnonzero(dones):
            ended.append((int(i), float(self._returns[i]), int(self._lengths[i])))
            self._returns[i], self._lengths[i] = 0.0, 0
        self._done_returns += [ret for _, ret, _ in ended]
        self._done_lengths += [length for _, _, length in ended]
        return ended

    def pop(self) -> EpisodeStats:
        """The episodes finished since the last call (and forget them)."""
        stats = EpisodeStats(np.array(self._done_returns), np.array(self._done_lengths))
        self._done_returns, self._done_lengths = [], []
        return stats


def _as_done(terminated: np.ndarray, truncated: np.ndarray) -> Bool[Tensor, " n"]:
    return torch.as_tensor(np.logical_or(terminated, truncated))


@torch.no_grad()
def play_episodes(
    agent: Agent,
    env: EnvSource,
    n_episodes: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    n_envs: int = 16,
    max_steps: int | None = None,
) -> EpisodeStats:
    """Play ``agent`` for ``n_episodes`` episodes and return their returns and lengths.

    Each env plays a fixed quota of episodes (``n_episodes`` split as evenly as
    possible), so fast episodes are not over-represented. Envs are seeded with
    ``seed, seed + 1, ...`` and actions drawn from a torch generator seeded with
    ``seed``: a call is reproducible.

    Args:
        agent: Any :class:`~dtlens.data.agents.base.Agent`.
        env: Env id or factory (see :func:`make_vector_env`).
        n_episodes: Episodes to play (> 0).
        temperature: 0 = greedy; otherwise sample from ``softmax(logits / T)``.
        top_k: Sample among the k most likely actions only.
        seed: Seeds envs and sampling.
        n_envs: Environments stepped together (capped at ``n_episodes``).
        max_steps: Episode length limit for an env id.

    Returns:
        :class:`EpisodeStats` over exactly ``n_episodes`` episodes, ordered by env.

    Raises:
        ConfigError: Bad ``n_episodes``, ``n_envs``, temperature or top_k.

    Example:
        >>> from dtlens.data.agents import LSTMAgent, LSTMAgentConfig
        >>> from dtlens.training.probe_envs import CueRecallEnv
        >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=0)).eval()
        >>> play_episodes(agent, CueRecallEnv, n_episodes=4, n_envs=2).lengths.tolist()
        [2, 2, 2, 2]
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes <= 0:
        raise ConfigError(f"n_episodes must be a positive int, got {n_episodes!r}")
    check_sampling(temperature, top_k, getattr(agent, "n_actions", None))
    n_envs = min(n_envs, n_episodes)
    quota = np.full(n_envs, n_episodes // n_envs)
    quota[: n_episodes % n_envs] += 1
    envs = make_vector_env(env, n_envs, max_steps)
    generator = torch.Generator().manual_seed(seed)
    tracker = EpisodeTracker(n_envs)
    returns: list[list[float]] = [[] for _ in range(n_envs)]
    lengths: list[list[int]] = [[] for _ in range(n_envs)]
    try:
        obs, _ = envs.reset(seed=seed)
        state = agent.initial_state(n_envs)
        done = torch.zeros(n_envs, dtype=torch.bool)
        while any(len(r) < q for r, q in zip(returns, quota, strict=True)):
            logits, state = agent.act(torch.as_tensor(obs), state, done)
            actions = sample_actions(logits, temperature, generator, top_k)
            obs, rewards, terminated, truncated, _ = envs.step(actions.cpu().numpy())
            done = _as_done(terminated, truncated)
            for i, ret, length in tracker.update(rewards, done.numpy()):
                if len(returns[i]) < quota[i]:
                    returns[i].append(float(ret))
                    lengths[i].append(int(length))
    finally:
        envs.close()
    return EpisodeStats(
        np.array([r for env_returns in returns for r in env_returns]),
        np.array([n for env_lengths in lengths for n in env_lengths]),
    )


@dataclass(frozen=True)
class Segment:
    """``T`` steps of ``N`` environments collected by the current policy (one PPO batch).

    Attributes:
        obs: Raw images seen at each step.
        starts: True where ``obs[t]`` is an episode's first observation (the state is
            reset before step t).
        actions: Actions taken.
        logprobs: Log-probability of each action under the collecting policy.
        values: Critic value of each step.
        rewards: Reward received for each action.
        dones: True where the action ended the episode (so ``starts[t + 1]``).
        initial_state: Recurrent state before step 0 (before its reset).
        next_value: Critic value of the observation after the last step (for GAE).

    Example:
        >>> segment = SegmentCollector(envs).collect(agent, n_steps=8)  # doctest: +SKIP
        >>> segment.n_steps, segment.n_envs  # doctest: +SKIP
        (8, 16)
    """

    obs: UInt8[Tensor, "T N 7 7 3"]
    starts: Bool[Tensor, "T N"]
    actions: Int[Tensor, "T N"]
    logprobs: Float[Tensor, "T N"]
    values: Float[Tensor, "T N"]
    rewards: Float[Tensor, "T N"]
    dones: Bool[Tensor, "T N"]
    initial_state: Float[Tensor, "N state"]
    next_value: Float[Tensor, " N"]

    @property
    def n_steps(self) -> int:
        """Steps per environment, ``T``."""
        return self.obs.shape[0]

    @property
    def n_envs(self) -> int:
        """Number of environments, ``N``."""
        return self.obs.shape[1]


class SegmentCollector:
    """Steps a vector env with an :class:`LSTMAgent`, carrying obs and state across segments.

    Args:
        envs: A vector env from :func:`make_vector_env` (same-step auto-reset).
        seed: Seeds the envs' first reset and the action sampling.

    Example:
        >>> from dtlens.data.agents import LSTMAgentConfig
        >>> from dtlens.training.probe_envs import CueRecallEnv
        >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=0)).eval()
        >>> collector = SegmentCollector(make_vector_env(CueRecallEnv, 3), seed=0)
        >>> segment = collector.collect(agent, n_steps=4)
        >>> segment.obs.shape, segment.starts[:, 0].tolist()
        (torch.Size([4, 3, 7, 7, 3]), [True, False, True, False])
    """

    def __init__(self, envs: SyncVectorEnv, seed: int = 0):
        self.envs = envs
        self.n_envs = envs.num_envs
        self.generator = torch.Generator().manual_seed(seed)
        self.tracker = EpisodeTracker(self.n_envs)
        obs, _ = envs.reset(seed=seed)
        self._obs = torch.as_tensor(obs, dtype=torch.uint8)
        self._start = torch.ones(self.n_envs, dtype=torch.bool)
        self._state: Tensor | None = None

    @torch.no_grad()
    def collect(self, agent: LSTMAgent, n_steps: int) -> Segment:
        """Play ``n_steps`` steps in every env, sampling actions from the agent (T = 1).

        The next call continues where this one stopped (same episodes, same state).

        Example:
            >>> first = collector.collect(agent, 4)  # doctest: +SKIP
            >>> second = collector.collect(agent, 4)  # same episodes, on  # doctest: +SKIP
        """
        if self._state is None:
            self._state = agent.initial_state(self.n_envs)
        initial_state = self._state.clone()
        obs, starts, actions, logprobs, values, rewards, dones = ([] for _ in range(7))
        state, start, current = self._state, self._start, self._obs
        for _ in range(n_steps):
            logits, value, state = agent(current, agent.reset_state(state, start))
            action = sample_actions(logits, 1.0, self.generator)
            next_obs, reward, terminated, truncated, _ = self.envs.step(action.numpy())
            done = _as_done(terminated, truncated)
            self.tracker.update(reward, done.numpy())
            obs.append(current)
            starts.append(start)
            actions.append(action)
            logprobs.append(logits.gather(-1, action[:, None]).squeeze(-1))
            values.append(value)
            rewards.append(torch.as_tensor(reward, dtype=torch.float32))
            dones.append(done)
            current, start = torch.as_tensor(next_obs, dtype=torch.uint8), done
        _, next_value, _ = agent(current, agent.reset_state(state, start))
        self._state, self._start, self._obs = state, start, current
        return Segment(
            obs=torch.stack(obs),
            starts=torch.stack(starts),
            actions=torch.stack(actions),
            logprobs=torch.stack(logprobs),
            values=torch.stack(values),
            rewards=torch.stack(rewards),
            dones=torch.stack(dones),
            initial_state=initial_state,
            next_value=next_value,
        )
