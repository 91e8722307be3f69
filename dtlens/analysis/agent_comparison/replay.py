"""Replay recorded episodes for any agent: its logits and action distribution at each step.

Comparing a DT with the agents it simulates needs every agent's distribution on the *same*
steps. :func:`agent_logits` resets a fresh env per episode (its seed and layout), feeds
the agent the recorded observations and takes the recorded actions, all episodes in
lockstep (:func:`~dtlens.analysis.agent_comparison.episodes.drive`), so a recurrent
agent carries its hidden state along the very episode; :func:`probabilities_from_logits`
turns logits into the distribution the agent samples from, on the DT's action set.

Example:
    >>> from dtlens.analysis.agent_comparison.episodes import play_episodes
    >>> from dtlens.data.agents.planner import BoltzmannPlanner
    >>> planner = BoltzmannPlanner(logit_scale=2.5)
    >>> episodes = play_episodes(planner, ["key/top-key"], ["greedy:1"])
    >>> agent_probabilities(planner, episodes).shape
    torch.Size([6, 7])
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.agent_comparison.episodes import ComparisonEpisodes, drive
from dtlens.data.agents.base import Agent, action_probabilities
from dtlens.env.scenarios import as_scenario
from dtlens.errors import ConfigError, EnvError

__all__ = ["agent_logits", "agent_probabilities", "probabilities_from_logits"]


def agent_logits(
    agent: Agent, episodes: ComparisonEpisodes, n_actions: int = 7
) -> Float[Tensor, "step agent_action"]:
    """An agent's logits at every step of ``episodes``, replayed.

    Each episode is replayed in a fresh env (same seed and layout, the recorded
    actions), all episodes in lockstep; the agent reads the recorded observations, so
    a recurrent agent carries its hidden state along the episode as if it had played
    it (and the planner, which reads the map, sees the same map).

    Args:
        agent: any :class:`~dtlens.data.agents.base.Agent`.
        episodes: from :func:`play_episodes` (played by this agent or another).
        n_actions: the action set compared (the DT's); the agent may have fewer.

    Returns:
        ``[N, agent.n_actions]`` float32 logits, rows in step order of ``episodes``.

    Raises:
        ConfigError: an agent with more than ``n_actions`` actions.
        EnvError: the replay diverged from the recorded observations (episodes from
            another env).

    Examples:
        >>> from dtlens.analysis.agent_comparison.episodes import play_episodes
        >>> from dtlens.data.agents.planner import BoltzmannPlanner
        >>> planner = BoltzmannPlanner()
        >>> eps = play_episodes(planner, ["key/top-key"], ["greedy:1"])
        >>> logits = agent_logits(planner, eps)
        >>> logits.argmax(-1).tolist() == eps.demos.actions.tolist()  # greedy: its argmax
        True
    """
    if agent.n_actions > n_actions:
        raise ConfigError(
            f"the agent has {agent.n_actions} actions, more than the {n_actions} compared"
        )
    demos = episodes.demos
    starts, lengths = demos.episode_starts, demos.episode_lengths
    layouts = [as_scenario(name) for name in episodes.layouts]

    def recorded_obs(i: int, t: int) -> np.ndarray | None:
        return demos.obs[starts[i] + t] if t < lengths[i] else None

    def recorded_action(i: int, t: int, logits: Tensor) -> int:
        return int(demos.actions[starts[i] + t])

    played = drive(
        agent, layouts, episodes.seeds.tolist(), episodes.max_steps, recorded_action, recorded_obs
    )
    short = [i for i, rows in enumerate(played.logits) if len(rows) != lengths[i]]
    if short:
        i = short[0]
        raise EnvError(
            f"replaying episode {i} ({layouts[i].name}, seed {episodes.seeds[i]}) ended after "
            f"{len(played.logits[i])} steps, but it has {lengths[i]}"
        )
    return torch.stack([row for episode in played.logits for row in episode])


def _check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}")
    if not temperature > 0:
        raise ConfigError(
            f"temperature must be > 0 to give a distribution, got {temperature!r} "
            "(greedy has none; use a small temperature instead)"
        )


def probabilities_from_logits(
    logits: Float[Tensor, "step agent_action"], temperature: float = 1.0, n_actions: int = 7
) -> Float[Tensor, "step action"]:
    """``softmax(logits / temperature)``, widened to ``n_actions`` actions.

    An agent with fewer actions than ``n_actions`` is taken to use MiniGrid's first
    ones (``left, right, forward, ...``, as MiniGrid's reduced action spaces do); the
    others get probability 0.

    Raises:
        ConfigError: temperature not > 0 (a greedy agent has no distribution to
            compare; use a small temperature), or more than ``n_actions`` logits.

    Examples:
        >>> probabilities_from_logits(torch.zeros(1, 2), n_actions=3).tolist()
        [[0.5, 0.5, 0.0]]
    """
    _check_temperature(temperature)
    if logits.shape[-1] > n_actions:
        raise ConfigError(f"got {logits.shape[-1]} action logits, more than {n_actions}")
    probs = action_probabilities(logits.double(), float(temperature)).float()
    missing = n_actions - probs.shape[-1]
    return torch.cat([probs, probs.new_zeros(probs.shape[0], missing)], -1) if missing else probs


def agent_probabilities(
    agent: Agent,
    episodes: ComparisonEpisodes,
    temperature: float = 1.0,
    n_actions: int = 7,
) -> Float[Tensor, "step action"]:
    """An agent's action distribution at every step of ``episodes`` (replayed).

    :func:`agent_logits`, then :func:`probabilities_from_logits`:
    ``softmax(logits / temperature)`` (the distribution
    :func:`~dtlens.data.agents.base.sample_actions` draws from), with probability 0
    on actions the agent does not have.

    Args:
        agent: any :class:`~dtlens.data.agents.base.Agent`.
        episodes: from :func:`play_episodes` (played by this agent or another).
        temperature: > 0; the agent's sampling temperature.
        n_actions: the action set to report on (the DT's: 7 in MiniGrid).

    Returns:
        ``[N, n_actions]`` float32 probabilities, rows in step order of ``episodes``.

    Raises:
        ConfigError: temperature not > 0, or an agent with more than ``n_actions``
            actions.
        EnvError: the replay diverged from the recorded observations.

    Examples:
        >>> from dtlens.analysis.agent_comparison.episodes import play_episodes
        >>> from dtlens.data.agents.planner import BoltzmannPlanner
        >>> planner = BoltzmannPlanner(logit_scale=2.5)
        >>> eps = play_episodes(planner, ["key/top-key"], ["greedy:1"])
        >>> p = agent_probabilities(planner, eps)
        >>> p.shape, p.argmax(-1).tolist() == eps.demos.actions.tolist()
        (torch.Size([6, 7]), True)
    """
    _check_temperature(temperature)
    return probabilities_from_logits(
        agent_logits(agent, episodes, n_actions), temperature, n_actions
    )
