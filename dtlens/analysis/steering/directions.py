"""Steering directions: the difference of class means, or a probe's normal.

Background:
    For a two-valued fact (the instruction: key 0 / ball 1) at one hook and token:

    - :func:`mean_difference`: ``mean(act | label 1) - mean(act | label 0)``. Added
      with coefficient 1 to an activation of class 0, it moves it by exactly the
      average gap between the classes (Turner et al. 2023; Marks & Tegmark 2023
      found it more causal than probe normals);
    - :func:`probe_direction`: the unit normal ``u`` of a logistic-regression probe
      (:class:`~dtlens.analysis.probes.ProbeFit`, in activation space), scaled so
      that coefficient 1 moves an activation along ``u`` by the class means' gap
      along ``u``: ``u (u . (mean_1 - mean_0))``.

    :func:`fact_directions` gives one direction per hook from a
    :class:`~dtlens.analysis.probes.ProbeData`, read at one token.

Example:
    >>> v = mean_difference(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), [0, 1])
    >>> v.tolist()
    [2.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from dtlens.analysis.probes.data import ProbeData
from dtlens.analysis.probes.fit import ProbeFit, fit_probe
from dtlens.analysis.probes.layers import Token, probe_activations, residual_hooks
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["Method", "fact_directions", "mean_difference", "probe_direction"]

Method = Literal["mean_difference", "probe"]


def mean_difference(
    activations: Tensor, labels: np.ndarray | Tensor | Sequence[int], positive: int = 1
) -> Tensor:
    """``mean(activations | label == positive) - mean(activations | label != positive)``.

    Raises:
        ConfigError: a class is empty or the lengths differ.
    """
    acts = torch.as_tensor(activations).float()
    y = torch.as_tensor(np.asarray(labels)).reshape(-1)
    if y.shape[0] != acts.shape[0]:
        raise ConfigError(f"{acts.shape[0]} activations but {y.shape[0]} labels.")
    chosen = y == positive
    if not bool(chosen.any()) or bool(chosen.all()):
        raise ConfigError(f"a difference of means needs rows with and without label {positive}.")
    return acts[chosen].mean(0) - acts[~chosen].mean(0)


def probe_direction(
    fit: ProbeFit, activations: Tensor, labels: np.ndarray | Tensor | Sequence[int]
) -> Tensor:
    """A two-class probe's unit normal, scaled by the class means' gap along it.

    ``u (u . (mean_1 - mean_0))`` with ``u`` = ``fit.direction`` (pointing to
    ``fit.classes[1]``); ``mean_1`` is the mean of the rows labelled ``fit.classes[1]``.

    Raises:
        ConfigError: a probe of more than two classes.
    """
    u = torch.as_tensor(fit.direction, dtype=torch.float32)
    flat = torch.as_tensor(activations).float().flatten(1)
    gap = mean_difference(flat, labels, positive=fit.classes[1])
    return u * torch.dot(u, gap)


def fact_directions(
    model: HookedDecisionTransformer,
    data: ProbeData,
    fact: str,
    hooks: Sequence[str] | None = None,
    token: Token = "S",
    method: Method = "mean_difference",
    seed: int = 0,
) -> dict[str, Tensor]:
    """One direction per hook from label 0 to label 1 of a two-valued ``fact``.

    Args:
        model: the model.
        data: windows and labels.
        fact: a two-valued fact (``"instruction"``: key -> ball; ``"target_side"``:
            top -> bottom).
        hooks: hook names (default :func:`~dtlens.analysis.probes.residual_hooks`).
        token: the token read (default the last state).
        method: ``"mean_difference"`` or ``"probe"``.
        seed: the probe's split seed.

    Raises:
        ConfigError: an unknown or non-binary fact, or an unknown method.

    Example:
        >>> dirs = fact_directions(model, data, "instruction")  # doctest: +SKIP
        >>> dirs["blocks.1.hook_resid_mid"].shape  # doctest: +SKIP
        torch.Size([128])
    """
    if fact not in data.labels:
        raise ConfigError(f"fact={fact!r} is not labelled; the facts are {sorted(data.labels)}.")
    labels = data.labels[fact]
    if sorted(np.unique(labels).tolist()) != [0, 1]:
        raise ConfigError(
            f"a steering direction needs a fact with labels 0 and 1; {fact!r} is not."
        )
    if method not in ("mean_difference", "probe"):
        raise ConfigError(f"method={method!r} must be 'mean_difference' or 'probe'.")
    names = list(residual_hooks(model) if hooks is None else hooks)
    acts = probe_activations(model, data, names, token)
    out = {}
    for name in names:
        flat = acts[name].flatten(1)
        if method == "mean_difference":
            vector = mean_difference(flat, labels)
        else:
            vector = probe_direction(fit_probe(flat, labels, seed), flat, labels)
        out[name] = vector.reshape(acts[name].shape[1:])
    return out
