"""Activation addition: add ``coef * direction`` at a hook and positions, as a hook context.

Background:
    Steering by activation addition (Turner et al. 2023, "Activation Addition";
    Li et al. 2023, "Inference-Time Intervention") adds a fixed vector to an
    activation on every forward pass: here ``act[:, p] += coef * direction`` at each
    chosen position ``p``. :func:`steer` is a context manager over the model's own
    TransformerLens hooks (``model.hooks``), so everything that runs the model inside
    it is steered: ``model(batch)``, ``run_with_cache`` and the play loop
    :func:`~dtlens.training.evaluate.rollout` (every step's forward).

    Positions are window positions, resolved at every forward from the length of its
    token sequence (rollout windows grow during the first steps of an episode):
    ``"all"``, ``"last"`` (the last token: the state whose logits give the next action),
    ``"states"`` / ``"rtgs"`` / ``"actions"`` (every token of that kind; windows start
    with an RTG token, R S A R S A ...), or ints (negative ones count from the end;
    positions outside a shorter window are skipped).

Example:
    >>> from dtlens.training.evaluate import rollout
    >>> with steer(model, "blocks.1.hook_resid_mid", direction, coef=2.0):  # doctest: +SKIP
    ...     result = rollout(model, initial_rtg=0.9, n_episodes=4, layouts="balanced")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from dtlens.errors import BatchError, ConfigError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["POSITION_KINDS", "Positions", "Steering", "resolve_positions", "steer"]

#: the named position sets.
POSITION_KINDS = ("all", "last", "states", "rtgs", "actions")
Positions = str | int | Sequence[int]
_KIND_LETTER = {"states": "S", "rtgs": "R", "actions": "A"}
#: hooks whose second axis is not the token axis
_NO_TOKEN_AXIS = ("hook_pattern", "hook_attn_scores")


def resolve_positions(positions: Positions, n_tokens: int, kinds: str = "RSA") -> Tensor:
    """The token positions ``positions`` names in a window of ``n_tokens`` tokens.

    Args:
        positions: a name of :data:`POSITION_KINDS`, an int or a sequence of ints.
        n_tokens: the window's tokens.
        kinds: the token kinds of one step, in order (``"RSA"``; ``"SA"`` for a clone).

    Raises:
        ConfigError: an unknown name, or a kind the model has no tokens of.

    Examples:
        >>> resolve_positions("states", 8).tolist(), resolve_positions([-1, 0, 30], 8).tolist()
        ([1, 4, 7], [7, 0])
    """
    if isinstance(positions, str):
        if positions == "all":
            return torch.arange(n_tokens)
        if positions == "last":
            return torch.tensor([n_tokens - 1])
        if positions not in _KIND_LETTER:
            raise ConfigError(f"positions={positions!r} must be one of {POSITION_KINDS} or ints.")
        letter = _KIND_LETTER[positions]
        if letter not in kinds:
            raise ConfigError(f"this model has no {positions} tokens (token kinds {kinds!r}).")
        offset = kinds.index(letter)
        return torch.arange(offset, n_tokens, len(kinds))
    items = [positions] if isinstance(positions, int | np.integer) else list(positions)
    if any(isinstance(p, bool) or not isinstance(p, int | np.integer) for p in items):
        raise ConfigError(f"positions={positions!r} must be a name or ints.")
    kept = [int(p) + n_tokens if p < 0 else int(p) for p in items]
    return torch.tensor([p for p in kept if 0 <= p < n_tokens], dtype=torch.long)


@dataclass(frozen=True, eq=False)
class Steering:
    """One activation addition: ``act[:, positions] += coef * direction`` at ``hook``.

    Attributes:
        hook: a hook name with the token axis second (residual stream, ``attn_out``,
            ``mlp_out``, ``hook_z``/``q``/``k``/``v``, ``mlp.hook_post``...).
        direction: the vector added, shaped like the activation at one position
            (``[d_model]`` for the residual stream, ``[n_heads, d_head]`` for ``hook_z``).
        coef: its coefficient.
        positions: see :func:`resolve_positions`.
    """

    hook: str
    direction: Tensor
    coef: float = 1.0
    positions: Positions = "last"

    def __post_init__(self) -> None:
        if self.hook.endswith(_NO_TOKEN_AXIS):
            raise ConfigError(
                f"cannot steer {self.hook!r}: its second axis is not the token axis; steer "
                "the residual stream, an attn/mlp output or hook_z/q/k/v instead."
            )
        if not isinstance(self.direction, Tensor):
            object.__setattr__(self, "direction", torch.as_tensor(self.direction))
        if not torch.isfinite(torch.as_tensor(self.coef)) or not torch.all(
            torch.isfinite(self.direction)
        ):
            raise ConfigError("steering needs a finite coefficient and direction.")
        if isinstance(self.positions, str):
            resolve_positions(self.positions, 3)  # validates the name

    def hook_fn(self, model: HookedDecisionTransformer) -> Callable[[Tensor, Any], Tensor]:
        """The TransformerLens hook function (for ``model.hooks`` / ``run_with_hooks``)."""
        kinds = model.token_kinds
        hook_name, coef, positions = self.hook, float(self.coef), self.positions
        direction = self.direction

        def add(act: Tensor, hook: Any) -> Tensor:
            if tuple(direction.shape) != tuple(act.shape[2:]):
                raise BatchError(
                    f"steering direction of shape {list(direction.shape)} does not fit "
                    f"{hook_name!r}, whose activation at one position is {list(act.shape[2:])}."
                )
            index = resolve_positions(positions, act.shape[1], kinds).to(act.device)
            out = act.clone()
            out[:, index] = out[:, index] + coef * direction.to(act)
            return out

        return add

    def fwd_hooks(self, model: HookedDecisionTransformer) -> list[tuple[str, Callable]]:
        """``[(hook, fn)]`` for ``model.hooks(fwd_hooks=...)`` or ``run_with_hooks``."""
        return [(self.hook, self.hook_fn(model))]


@contextlib.contextmanager
def steer(
    model: HookedDecisionTransformer,
    hook: str | Steering | Sequence[Steering],
    direction: Tensor | np.ndarray | None = None,
    coef: float = 1.0,
    positions: Positions = "last",
) -> Iterator[HookedDecisionTransformer]:
    """Context manager: every forward of ``model`` inside it is steered.

    Args:
        model: the model.
        hook: the hook name, or one or more :class:`Steering` (then leave out
            ``direction``).
        direction: the vector added at each position.
        coef: its coefficient (0 changes nothing).
        positions: see :func:`resolve_positions` (default ``"last"``).

    Yields:
        The model.

    Raises:
        HookNameError: an unknown hook. ConfigError: bad positions or values.

    Examples:
        >>> hook = "blocks.0.hook_resid_post"
        >>> with steer(model, hook, v, coef=4.0, positions="all"):  # doctest: +SKIP
        ...     logits = model(batch)
    """
    if isinstance(hook, str):
        if direction is None:
            raise ConfigError("steer(model, hook, direction, ...) needs a direction.")
        steerings: list[Steering] = [Steering(hook, torch.as_tensor(direction), coef, positions)]
    else:
        if direction is not None:
            raise ConfigError("pass a direction with a hook name, not with Steering objects.")
        steerings = [hook] if isinstance(hook, Steering) else list(hook)
    fwd_hooks = [pair for s in steerings for pair in s.fwd_hooks(model)]
    with model.hooks(fwd_hooks):
        yield model
