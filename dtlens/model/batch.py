"""`TrajectoryBatch`: the one input type of models, edits and analyses.

A batch holds B trajectory windows of T timesteps each: observations, the actions
taken (T - 1 of them when the model is asked for the action at the last step, or
T), returns-to-go and environment timesteps, plus an optional padding mask
marking which timesteps are real. Shapes and dtypes are checked on
construction; nothing is cast or reshaped behind the caller's back.

Observations are grids ``[B, T, x, y, channel]`` or vectors ``[B, T, state_dim]``
(continuous-control models, see :mod:`dtlens.model.hf`); actions are discrete
(integer ``[B, T-1]``) or continuous (floating ``[B, T-1, act_dim]``).

Examples:
    >>> import torch
    >>> from dtlens.model.batch import TrajectoryBatch
    >>> batch = TrajectoryBatch(
    ...     obs=torch.zeros(2, 3, 7, 7, 20),
    ...     actions=torch.zeros(2, 2, dtype=torch.long),
    ...     rtg=torch.full((2, 3), 0.9),
    ...     timesteps=torch.arange(3).repeat(2, 1),
    ... )
    >>> batch.batch_size, batch.n_steps, batch.n_tokens(3)
    (2, 3, 8)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from dtlens.errors import BatchError

__all__ = ["TrajectoryBatch"]


@dataclass(frozen=True)
class TrajectoryBatch:
    """B windows of T timesteps: ``obs [B,T,x,y,c]``, ``actions [B,T-1]`` or ``[B,T]``,
    ``rtg [B,T]``, ``timesteps [B,T]`` and an optional ``padding_mask [B,T]``.

    Continuous-control windows have vector states ``obs [B,T,state_dim]`` and
    continuous actions ``actions [B,T-1,act_dim]`` (or ``[B,T,act_dim]``).

    Args:
        obs: observations, grids ``[B,T,x,y,c]`` or vectors ``[B,T,state_dim]``
            (one-hot grids are 0/1 floats; any real dtype is read as float by the
            state embedding).
        actions: the actions taken at steps 1..T-1 (or 1..T): integers ``[B,T-1]``
            (discrete) or floats ``[B,T-1,act_dim]`` (continuous).
        rtg: returns-to-go, floating. May be None for a behavioural clone.
        timesteps: integer environment timesteps.
        padding_mask: True where a timestep is real, False where it is padding.
            Models mask padded tokens out of attention and number positions from
            the first real token, so a padded window gives the same predictions
            at its real tokens as the unpadded one. Omit it to run padding as
            ordinary tokens (how the original project evaluated its models).
    """

    obs: Float[Tensor, "batch step x y channel"] | Float[Tensor, "batch step state_dim"]
    actions: Int[Tensor, "batch n_action"] | Float[Tensor, "batch n_action act_dim"]
    rtg: Float[Tensor, "batch step"] | None
    timesteps: Int[Tensor, "batch step"]
    padding_mask: Bool[Tensor, "batch step"] | None = None

    def __post_init__(self) -> None:
        for name in ("obs", "actions", "timesteps"):
            if not isinstance(getattr(self, name), Tensor):
                raise BatchError(
                    f"{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}; "
                    "convert with torch.as_tensor."
                )
        if self.obs.ndim not in (3, 5):
            raise BatchError(
                f"obs must have shape [batch, step, x, y, channel] (grids) or "
                f"[batch, step, state_dim] (vectors), got {tuple(self.obs.shape)}; "
                "add a batch dimension with obs[None] for a single trajectory."
            )
        if self.obs.dtype.is_complex:
            raise BatchError(f"obs must be real-valued, got dtype {self.obs.dtype}.")
        batch, steps = self.obs.shape[:2]
        if steps == 0:
            raise BatchError("a trajectory window needs at least one timestep (obs has T=0).")
        _check_shape("timesteps", self.timesteps, (batch, steps), "[batch, step]")
        if self.timesteps.dtype.is_floating_point or self.timesteps.dtype == torch.bool:
            raise BatchError(
                f"timesteps must be an integer tensor, got {self.timesteps.dtype}; "
                "timesteps index the time embedding."
            )
        self._check_actions(batch, steps)
        if self.rtg is not None:
            _check_shape("rtg", self.rtg, (batch, steps), "[batch, step]")
            if not self.rtg.dtype.is_floating_point:
                raise BatchError(
                    f"rtg must be a floating tensor, got {self.rtg.dtype}; use rtg.float()."
                )
        if self.padding_mask is not None:
            _check_shape("padding_mask", self.padding_mask, (batch, steps), "[batch, step]")
            if self.padding_mask.dtype != torch.bool:
                raise BatchError(
                    f"padding_mask must be a bool tensor (True = real step), "
                    f"got {self.padding_mask.dtype}."
                )
            if not bool(self.padding_mask[:, -1].all()):
                raise BatchError(
                    "padding_mask marks the last timestep as padding in some rows; "
                    "windows are left-padded, so the last step must be real."
                )

    def _check_actions(self, batch: int, steps: int) -> None:
        actions = self.actions
        continuous = actions.ndim == 3 and actions.dtype.is_floating_point
        if not continuous and (actions.ndim != 2 or actions.shape[0] != batch):
            raise BatchError(
                f"actions must have shape [batch, step - 1] or [batch, step] = "
                f"[{batch}, {steps - 1}] or [{batch}, {steps}] (discrete actions), or "
                f"[batch, step - 1, act_dim] (continuous), got {tuple(actions.shape)}."
            )
        if continuous and (actions.shape[0] != batch or actions.shape[2] == 0):
            raise BatchError(
                f"continuous actions must have shape [batch, step - 1, act_dim] = "
                f"[{batch}, {steps - 1}, act_dim] with act_dim >= 1, got {tuple(actions.shape)}."
            )
        if actions.shape[1] not in (steps - 1, steps):
            raise BatchError(
                f"actions cover {actions.shape[1]} steps but obs has {steps}: pass the "
                f"{steps - 1} actions taken before the last observation (shape "
                f"[{batch}, {steps - 1}{', act_dim' if continuous else ''}]), or {steps} to "
                "include the last one."
            )
        if not continuous and (actions.dtype.is_floating_point or actions.dtype == torch.bool):
            raise BatchError(
                f"actions must be an integer tensor, got {actions.dtype}; use .long() "
                "(continuous actions are floats of shape [batch, step - 1, act_dim])."
            )

    # ------------------------------------------------------------------ sizes
    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.obs.shape[0])

    @property
    def n_steps(self) -> int:
        """T, the number of timesteps (observations) per window."""
        return int(self.obs.shape[1])

    @property
    def continuous_actions(self) -> bool:
        """Whether the actions are continuous (floating ``[B, n, act_dim]``), not indices."""
        return self.actions.ndim == 3

    @property
    def has_final_action(self) -> bool:
        """Whether the action at the last timestep is included (actions ``[B, T]``)."""
        return self.actions.shape[1] == self.n_steps

    def n_tokens(self, tokens_per_step: int) -> int:
        """Tokens this batch makes for a model with 3 (R, S, A) or 2 (S, A) tokens a step."""
        return tokens_per_step * self.n_steps - (0 if self.has_final_action else 1)

    @property
    def device(self) -> torch.device:
        """Device of the observations."""
        return self.obs.device

    # -------------------------------------------------------------- transforms
    def replace(self, **changes: Tensor | None) -> TrajectoryBatch:
        """A new, validated batch with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> TrajectoryBatch:
        """The same batch on another device."""
        return TrajectoryBatch(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                for f in dataclasses.fields(self)
            }
        )

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> TrajectoryBatch:
        """Select rows of the batch (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TrajectoryBatch(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                for f in dataclasses.fields(self)
            }
        )

    def repeat(self, n: int) -> TrajectoryBatch:
        """Each row repeated ``n`` times consecutively (row i -> rows i*n .. i*n+n-1)."""
        return TrajectoryBatch(
            **{
                f.name: None
                if getattr(self, f.name) is None
                else getattr(self, f.name).repeat_interleave(n, dim=0)
                for f in dataclasses.fields(self)
            }
        )

    @staticmethod
    def cat(batches: Sequence[TrajectoryBatch]) -> TrajectoryBatch:
        """Concatenate batches with the same window shape along the batch dimension."""
        if not batches:
            raise BatchError("cat needs at least one batch.")
        shapes = {(b.obs.shape[1:], b.actions.shape[1:]) for b in batches}
        if len(shapes) != 1:
            raise BatchError(
                "cannot concatenate batches with different window shapes: "
                f"{sorted(map(str, shapes))}"
            )
        out = {}
        for f in dataclasses.fields(TrajectoryBatch):
            values = [getattr(b, f.name) for b in batches]
            if all(v is None for v in values):
                out[f.name] = None
            elif any(v is None for v in values):
                raise BatchError(f"cannot concatenate batches where only some have {f.name}.")
            else:
                out[f.name] = torch.cat(values, dim=0)
        return TrajectoryBatch(**out)

    def left_pad(self, n_steps: int, pad_action: int | float) -> TrajectoryBatch:
        """Left-pad every window to ``n_steps`` timesteps, the original project's way.

        Padding steps get zero observations, the padding action ``pad_action``
        (= the model's ``n_actions``; for continuous actions every dimension is
        set to it, usually 0.0), the RTG of the first real step, and
        timestep 0. The result's ``padding_mask`` marks them, so a model ignores
        them; drop it (``.replace(padding_mask=None)``) to run them as tokens.

        Examples:
            >>> import torch
            >>> b = TrajectoryBatch(torch.ones(1, 2, 7, 7, 20), torch.ones(1, 1, dtype=torch.long),
            ...                     torch.full((1, 2), 0.9), torch.tensor([[3, 4]]))
            >>> p = b.left_pad(4, pad_action=7)
            >>> p.timesteps.tolist(), p.actions.tolist(), p.padding_mask.tolist()
            ([[0, 0, 3, 4]], [[7, 7, 1]], [[False, False, True, True]])
        """
        extra = n_steps - self.n_steps
        if extra < 0:
            raise BatchError(
                f"cannot left-pad a window of {self.n_steps} steps to {n_steps}; "
                "slice it instead (batch windows are never truncated silently)."
            )
        b = self.batch_size
        obs = torch.cat([self.obs.new_zeros((b, extra, *self.obs.shape[2:])), self.obs], dim=1)
        pad = self.actions.new_full((b, extra, *self.actions.shape[2:]), pad_action)
        actions = torch.cat([pad, self.actions], dim=1)
        timesteps = torch.cat([self.timesteps.new_zeros((b, extra)), self.timesteps], dim=1)
        rtg = None
        if self.rtg is not None:
            first_rtg = self.rtg[:, :1].expand(b, extra)
            rtg = torch.cat([first_rtg, self.rtg], dim=1)
        real = self.padding_mask
        if real is None:
            real = torch.ones((b, self.n_steps), dtype=torch.bool, device=self.device)
        mask = torch.cat([real.new_zeros((b, extra)), real], dim=1)
        return TrajectoryBatch(obs, actions, rtg, timesteps, mask)


def _check_shape(name: str, tensor: Tensor, expected: tuple[int, ...], dims: str) -> None:
    if not isinstance(tensor, Tensor):
        raise BatchError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tuple(tensor.shape) != expected:
        raise BatchError(
            f"{name} must have shape {dims} = {list(expected)} to match obs, "
            f"got {list(tensor.shape)}."
        )
