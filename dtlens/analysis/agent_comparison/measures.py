"""The two measures of :mod:`~dtlens.analysis.agent_comparison`, and their summaries.

``KL(agent || DT)`` and argmax agreement at every step, then per state kind: the mean
over the steps of the kind with a 95 % interval from a bootstrap over *episodes*
(steps of one episode are not independent, so whole episodes are resampled).

Examples:
    >>> p = torch.tensor([[0.7, 0.2, 0.1]])
    >>> kl_divergence(p, p).tolist(), argmax_agreement(p, p).tolist()
    ([0.0], [True])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dtlens.analysis.agent_comparison.episodes import STATE_KINDS
from dtlens.errors import BatchError

__all__ = ["KINDS", "TIE_TOLERANCE", "argmax_agreement", "kl_divergence", "summarise_steps"]

#: The kinds a summary reports on: the state kinds, then all steps together.
KINDS: tuple[str, ...] = (*STATE_KINDS, "all")

#: Agent probabilities this close to the agent's maximum count as its argmax (ties).
TIE_TOLERANCE = 1e-6


def _check_pair(p: Tensor, q: Tensor) -> None:
    if not isinstance(p, Tensor) or not isinstance(q, Tensor) or p.shape != q.shape:
        shapes = [tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__ for x in (p, q)]
        raise BatchError(
            f"p and q must be tensors of the same shape [..., n_actions], got {shapes}"
        )


def kl_divergence(p: Float[Tensor, "... action"], q: Float[Tensor, "... action"]) -> Tensor:
    """``KL(p || q)`` in nats along the last axis (terms with ``p = 0`` count 0).

    Args:
        p: the reference distribution (the agent's), rows summing to 1.
        q: the approximating one (the DT's), same shape.

    Returns:
        ``[...]`` float64; ``inf`` where ``q = 0`` at an action with ``p > 0``.

    Examples:
        >>> p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
        >>> q = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25]])
        >>> [round(v, 4) for v in kl_divergence(p, q).tolist()]  # 0 and ln 2
        [0.0, 0.6931]
    """
    _check_pair(p, q)
    p, q = p.double(), q.double()
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


def argmax_agreement(
    p: Float[Tensor, "... action"], q: Float[Tensor, "... action"], atol: float = TIE_TOLERANCE
) -> Bool[Tensor, "..."]:
    """Whether ``q``'s most likely action is one of ``p``'s most likely actions.

    ``p``'s ties (probabilities within ``atol`` of its maximum) all count as its
    argmax; ``q``'s argmax is ``torch.argmax`` (the first on exact ties).

    Examples:
        >>> p = torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.2, 0.7]])
        >>> q = torch.tensor([[0.3, 0.6, 0.1], [0.5, 0.3, 0.2]])
        >>> argmax_agreement(p, q).tolist()
        [True, False]
    """
    _check_pair(p, q)
    p = p.double()
    at_q = p.gather(-1, q.argmax(-1, keepdim=True)).squeeze(-1)
    return at_q >= p.max(-1).values - atol


def _bootstrap(
    values: np.ndarray, episode: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float, float]:
    """Mean over steps and a 95 % percentile interval resampling whole episodes."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    ids, inverse = np.unique(episode, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=ids.size)
    counts = np.bincount(inverse, minlength=ids.size).astype(np.float64)
    mean = float(sums.sum() / counts.sum())
    if n_boot == 0:
        return mean, math.nan, math.nan
    pick = np.random.default_rng(seed).integers(0, ids.size, size=(n_boot, ids.size))
    boot = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return mean, float(lo), float(hi)


def summarise_steps(
    values: np.ndarray,
    kinds: np.ndarray,
    episode: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    where: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean of per-step values per state kind (and over all), with bootstrap intervals.

    Args:
        values: ``[..., N]`` one value per step (leading axes, e.g. agent x RTG, are
            summarised separately).
        kinds: ``[N]`` each step's state kind (index into ``STATE_KINDS``).
        episode: ``[N]`` each step's episode (the bootstrap resamples episodes).
        n_boot: resamples (0: no interval, NaN).
        seed: the bootstrap's seed (the same resamples for every cell).
        where: ``[N]`` bool, summarise only these steps (default all).

    Returns:
        ``(mean [..., K], ci [..., K, 2], n_steps [K], n_episodes [K])`` over
        :data:`KINDS`; a kind without steps has NaN mean and interval.

    Examples:
        >>> values = np.array([1.0, 0.0, 1.0, 1.0])
        >>> mean, ci, n, e = summarise_steps(values, np.array([0, 1, 0, 2]),
        ...                                  np.array([0, 0, 1, 1]), n_boot=0)
        >>> mean.tolist(), n.tolist(), e.tolist()
        ([1.0, 0.0, 1.0, 0.75], [2, 1, 1, 4], [2, 1, 1, 2])
    """
    values = np.asarray(values, dtype=np.float64)
    kinds, episode = np.asarray(kinds), np.asarray(episode)
    n = kinds.shape[0]
    if values.shape[-1:] != (n,) or episode.shape != (n,):
        raise BatchError(
            f"values [..., N], kinds [N] and episode [N] must agree, got {list(values.shape)}, "
            f"{list(kinds.shape)} and {list(episode.shape)}"
        )
    keep = np.ones(n, dtype=bool) if where is None else np.asarray(where, dtype=bool)
    masks = [keep & (kinds == k) for k in range(len(STATE_KINDS))] + [keep]
    lead = values.shape[:-1]
    flat = values.reshape(-1, n)
    mean = np.full((flat.shape[0], len(KINDS)), np.nan)
    ci = np.full((flat.shape[0], len(KINDS), 2), np.nan)
    for row in range(flat.shape[0]):
        for k, mask in enumerate(masks):
            m, lo, hi = _bootstrap(flat[row, mask], episode[mask], n_boot, seed)
            mean[row, k], ci[row, k] = m, (lo, hi)
    n_steps = np.array([int(m.sum()) for m in masks])
    n_episodes = np.array([np.unique(episode[m]).size for m in masks])
    return mean.reshape(*lead, len(KINDS)), ci.reshape(*lead, len(KINDS), 2), n_steps, n_episodes
