"""The demonstrator-agent interface and action sampling shared by every agent.

Background:
    dtlens collects demonstrations from *agents*: policies that see MiniGrid's raw
    ``[7, 7, 3]`` index image (object, colour, state per cell) and may carry a
    recurrent state from step to step. Two kinds implement :class:`Agent`: the PPO
    LSTM agent (:mod:`dtlens.data.agents.lstm`) and a planner. Everything that plays
    an agent (demonstration collection, PPO rollouts, evaluation) only uses
    ``initial_state`` and ``act`` and turns logits into actions with
    :func:`sample_actions`, so agents are interchangeable.

    State convention: ``act(obs, state, done_mask)`` first resets the rows of
    ``state`` whose ``done_mask`` is True (their previous step ended an episode, so
    ``obs`` is a new episode's first observation) to the initial state, then reads
    ``obs``. This is BabyAI's ``memory * (1 - done)``.

Usage:
    >>> import torch
    >>> from dtlens.data.agents.base import sample_actions
    >>> logits = torch.tensor([[0.0, 2.0, 1.0]])
    >>> sample_actions(logits, temperature=0.0).tolist()  # greedy
    [1]
    >>> g = torch.Generator().manual_seed(0)
    >>> sample_actions(logits, temperature=1.0, top_k=1, generator=g).tolist()
    [1]
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from dtlens.errors import BatchError, ConfigError

__all__ = ["Agent", "action_probabilities", "check_sampling", "sample_actions"]


@runtime_checkable
class Agent(Protocol):
    """A policy over MiniGrid's raw partial view, acting in many environments at once.

    Attributes:
        n_actions: Size of the action space (7 for MiniGrid).

    Example:
        >>> from dtlens.data.agents import Agent, LSTMAgent, LSTMAgentConfig
        >>> isinstance(LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8)), Agent)
        True
    """

    n_actions: int

    def initial_state(self, n_envs: int) -> Any:
        """The state before an episode's first step, for ``n_envs`` environments.

        Memoryless agents return ``None``; recurrent agents a tensor (or a tuple of
        tensors) whose first axis is the environment.
        """
        ...

    def act(
        self,
        obs: Int[Tensor, "n_envs 7 7 3"],
        state: Any,
        done_mask: Bool[Tensor, " n_envs"] | None = None,
    ) -> tuple[Float[Tensor, "n_envs n_actions"], Any]:
        """Action logits for one step of every environment, and the next state.

        Args:
            obs: Raw MiniGrid images (integer indices), one per environment.
            state: The state returned by the previous call (or ``initial_state``).
            done_mask: True where the previous step ended that environment's episode;
                those rows of ``state`` are reset to the initial state first. ``None``
                means no resets.

        Returns:
            ``(logits, new_state)``: logits (unnormalised log-probabilities) over the
            actions, and the state to pass to the next call.
        """
        ...


def check_sampling(temperature: float, top_k: int | None, n_actions: int | None = None) -> None:
    """Validate sampling options; raise :class:`ConfigError` naming the bad one.

    Args:
        temperature: Must be a finite number >= 0 (0 means greedy).
        top_k: ``None`` (all actions) or an int in ``[1, n_actions]``.
        n_actions: The number of actions, to bound ``top_k`` (skipped when None).

    Example:
        >>> check_sampling(1.0, None)
        >>> check_sampling(-1.0, None)
        Traceback (most recent call last):
        ...
        dtlens.errors.ConfigError: temperature must be a finite number >= 0 (0 = greedy), got -1.0
    """
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}"
        )
    if top_k is None:
        return
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be None or a positive int, got {top_k!r}")
    if n_actions is not None and top_k > n_actions:
        raise ConfigError(f"top_k must be at most n_actions={n_actions}, got {top_k}")


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise BatchError(
            f"logits must be a float tensor [n_envs, n_actions], got {shape}"
            + (f" {logits.dtype}" if isinstance(logits, Tensor) else "")
        )


def action_probabilities(
    logits: Float[Tensor, "n n_actions"],
    temperature: float = 1.0,
    top_k: int | None = None,
) -> Float[Tensor, "n n_actions"]:
    """The distribution :func:`sample_actions` draws from.

    ``softmax(logits / temperature)`` restricted to the ``top_k`` largest logits (the
    others get probability 0; ties at the k-th value are broken by ``torch.topk``).
    ``temperature=0`` is the greedy limit: probability 1 on the argmax (first index
    on ties).

    Args:
        logits: Action logits, one row per environment.
        temperature: >= 0. Higher flattens the distribution; 1 leaves it unchanged.
        top_k: Keep only the k most likely actions (``None`` keeps all).

    Returns:
        Probabilities, rows summing to 1.

    Raises:
        ConfigError: For a bad temperature or top_k.
        BatchError: If logits is not a 2-d float tensor.

    Example:
        >>> import torch
        >>> p = action_probabilities(torch.log(torch.tensor([[0.5, 0.3, 0.2]])), top_k=2)
        >>> [round(v, 3) for v in p[0].tolist()]
        [0.625, 0.375, 0.0]
    """
    _check_logits(logits)
    check_sampling(temperature, top_k, logits.shape[-1])
    if temperature == 0:
        greedy = torch.zeros_like(logits)
        return greedy.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    scaled = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        keep = torch.topk(scaled, top_k, dim=-1).indices
        masked = torch.full_like(scaled, float("-inf"))
        scaled = masked.scatter(-1, keep, scaled.gather(-1, keep))
    return torch.softmax(scaled, dim=-1)


def sample_actions(
    logits: Float[Tensor, "n n_actions"],
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
) -> Int[Tensor, " n"]:
    """Draw one action per row: temperature sampling, greedy (T=0) or top-k.

    Args:
        logits: Action logits, one row per environment.
        temperature: 0 takes the argmax; > 0 samples from ``softmax(logits / T)``.
        generator: Torch RNG for reproducible draws (the global RNG when None).
        top_k: Sample among the k most likely actions only.

    Returns:
        Action indices (int64).

    Raises:
        ConfigError: For a bad temperature or top_k.
        BatchError: If logits is not a 2-d float tensor.

    Example:
        >>> import torch
        >>> sample_actions(torch.tensor([[1.0, 3.0], [5.0, 0.0]]), temperature=0).tolist()
        [1, 0]
    """
    probs = action_probabilities(logits, temperature, top_k)
    if temperature == 0:
        return probs.argmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
