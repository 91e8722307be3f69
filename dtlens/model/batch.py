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

from dtlens.errors import BatchError, EmptyBatchError, NonFiniteError
from dtlens.model.batch_checks import (
    check_index_dtype,
    check_left_padding,
    check_obs_values,
    check_shape,
    describe_non_finite,
    is_finite,
)

__all__ = ["TrajectoryBatch", "check_is_batch"]

#: Fields whose values (not only shapes) are checked when a batch is built.
_VALUE_FIELDS = ("obs", "rtg", "padding_mask")


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

    Raises:
        BatchError: a field of the wrong type, shape or dtype (``timesteps`` and
            discrete ``actions`` must be int64 or int32: ``uint8`` wraps past 255).
        EmptyBatchError: no windows (``B = 0``).
        NonFiniteError: NaN or inf in ``obs`` or ``rtg``.
        OneHotError: one-hot grids (``[B, T, x, y, 20]``) holding values other than 0/1.
        PaddingMaskError: a ``padding_mask`` that is not left padding.

    Values are checked once, when a batch is built from tensors; batches derived from a
    checked one (:meth:`to`, indexing, :meth:`repeat`, :meth:`cat`, :meth:`left_pad`,
    and the unchanged fields in :meth:`replace`) are not scanned again.
    """

    obs: Float[Tensor, "batch step x y channel"] | Float[Tensor, "batch step state_dim"]
    actions: Int[Tensor, "batch n_action"] | Float[Tensor, "batch n_action act_dim"]
    rtg: Float[Tensor, "batch step"] | None
    timesteps: Int[Tensor, "batch step"]
    padding_mask: Bool[Tensor, "batch step"] | None = None

    def __post_init__(self) -> None:
        self._check_structure()
        self._check_values(_VALUE_FIELDS)

    @classmethod
    def _derived(cls, changed: Sequence[str] = (), **fields: Tensor | None) -> TrajectoryBatch:
        """A batch built from a validated one: shapes and dtypes are checked again, but the
        values (a pass over every element) only of the fields in ``changed``."""
        batch = object.__new__(cls)
        for name, value in fields.items():
            object.__setattr__(batch, name, value)
        batch._check_structure()
        batch._check_values(tuple(changed))
        return batch

    def _check_structure(self) -> None:
        """Types, shapes and dtypes (no pass over the data)."""
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
        if batch == 0:
            raise EmptyBatchError(
                f"the batch is empty (obs {list(self.obs.shape)}: no windows); pass at least "
                "one window. If it came from selecting rows (batch[mask], batch[indices]), "
                "check that the selection keeps any."
            )
        if steps == 0:
            raise BatchError("a trajectory window needs at least one timestep (obs has T=0).")
        check_shape("timesteps", self.timesteps, (batch, steps), "[batch, step]")
        check_index_dtype("timesteps", self.timesteps, "timesteps index the time embedding")
        self._check_actions(batch, steps)
        if self.rtg is not None:
            check_shape("rtg", self.rtg, (batch, steps), "[batch, step]")
            if not self.rtg.dtype.is_floating_point:
                raise BatchError(
                    f"rtg must be a floating tensor, got {self.rtg.dtype}; use rtg.float()."
                )
        if self.padding_mask is not None:
            check_shape("padding_mask", self.padding_mask, (batch, steps), "[batch, step]")
            if self.padding_mask.dtype != torch.bool:
                raise BatchError(
                    f"padding_mask must be a bool tensor (True = real step), "
                    f"got {self.padding_mask.dtype}."
                )

    def _check_values(self, names: Sequence[str]) -> None:
        """The checks that read the data: finite obs and RTG, 0/1 one-hot grids, left padding.

        Each is a vectorised pass or two (a sum, ``x - x * x`` and ``amax``); the details
        in an error message are computed only once a check has failed. Tensors on the
        meta device (shapes only) have no values to check.
        """
        if not names or self.obs.is_meta:
            return
        if "obs" in names:
            check_obs_values(self.obs)
        if "rtg" in names and self.rtg is not None and not is_finite(self.rtg):
            raise NonFiniteError(
                f"rtg holds {describe_non_finite(self.rtg)}; returns-to-go must be finite numbers "
                "(the return the model is asked to reach, e.g. 0.9, minus the rewards so far)."
            )
        if "padding_mask" in names and self.padding_mask is not None:
            check_left_padding(self.padding_mask)

    def check_values(self, fields: Sequence[str] = _VALUE_FIELDS) -> None:
        """Check the values of ``fields`` again, as building the batch did.

        A batch's tensors can be edited in place after it was built
        (``batch.rtg[0] = float("nan")``); this repeats the checks of ``obs`` (finite,
        0/1 for one-hot grids), ``rtg`` (finite) and ``padding_mask`` (left padding).

        Raises:
            NonFiniteError, OneHotError, PaddingMaskError: as when the batch is built.

        Example:
            >>> import torch
            >>> b = TrajectoryBatch(torch.zeros(1, 2, 5), torch.zeros(1, 1, 3),
            ...                     torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long))
            >>> b.rtg[0, 0] = float("inf")
            >>> b.check_values(["rtg"])  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            dtlens.errors.NonFiniteError: rtg holds 0 NaN and 1 inf values ...
        """
        unknown = sorted(set(fields) - set(_VALUE_FIELDS))
        if unknown:
            raise BatchError(
                f"no value check for {unknown}; the checked fields are {list(_VALUE_FIELDS)}."
            )
        self._check_values(tuple(fields))

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
        if not continuous:
            check_index_dtype("actions", actions, "discrete actions index the action embedding")

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
        """A new, validated batch with some fields replaced (as ``dataclasses.replace``).

        Only the replaced fields' values are checked again (their shapes are checked
        against the rest), so replacing the RTG of a large batch does not rescan its
        observations.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise BatchError(
                f"TrajectoryBatch has no field {unknown[0]!r}; the fields are {sorted(names)}."
            )
        fields = {name: changes.get(name, getattr(self, name)) for name in names}
        return type(self)._derived(tuple(changes), **fields)

    def to(self, device: torch.device | str) -> TrajectoryBatch:
        """The same batch on another device."""
        return type(self)._derived(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                for f in dataclasses.fields(self)
            }
        )

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> TrajectoryBatch:
        """Select rows of the batch (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return type(self)._derived(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                for f in dataclasses.fields(self)
            }
        )

    def repeat(self, n: int) -> TrajectoryBatch:
        """Each row repeated ``n`` times consecutively (row i -> rows i*n .. i*n+n-1)."""
        return type(self)._derived(
            **{
                f.name: None
                if getattr(self, f.name) is None
                else getattr(self, f.name).repeat_interleave(n, dim=0)
                for f in dataclasses.fields(self)
            }
        )

    @staticmethod
    def cat(batches: Sequence[TrajectoryBatch]) -> TrajectoryBatch:
        """Concatenate batches with the same window shape along the batch dimension.

        A batch without a ``padding_mask`` has only real steps, so when some batches
        have a mask and others do not, the others get an all-True mask (the same
        predictions: a mask only hides padding). Batches where only some have an
        ``rtg`` are refused.

        Raises:
            BatchError: no batches, different window shapes, or only some with ``rtg``.

        Examples:
            >>> import torch
            >>> def window(mask=None):
            ...     actions = torch.zeros(1, 1, dtype=torch.long)
            ...     return TrajectoryBatch(torch.zeros(1, 2, 3), actions, torch.ones(1, 2),
            ...                            torch.tensor([[0, 1]]), mask)
            >>> both = TrajectoryBatch.cat([window(torch.tensor([[False, True]])), window()])
            >>> both.padding_mask.tolist()
            [[False, True], [True, True]]
        """
        if not batches:
            raise BatchError("cat needs at least one batch.")
        shapes = {(b.obs.shape[1:], b.actions.shape[1:]) for b in batches}
        if len(shapes) != 1:
            raise BatchError(
                "cannot concatenate batches with different window shapes: "
                f"{sorted(map(str, shapes))}"
            )
        if any(b.padding_mask is not None for b in batches):
            batches = [
                b
                if b.padding_mask is not None
                else b.replace(padding_mask=torch.ones_like(b.timesteps, dtype=torch.bool))
                for b in batches
            ]
        out = {}
        for f in dataclasses.fields(TrajectoryBatch):
            values = [getattr(b, f.name) for b in batches]
            if all(v is None for v in values):
                out[f.name] = None
            elif any(v is None for v in values):
                raise BatchError(f"cannot concatenate batches where only some have {f.name}.")
            else:
                out[f.name] = torch.cat(values, dim=0)
        return TrajectoryBatch._derived(**out)

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
        # zero observations, the first real RTG and left padding: nothing new to scan
        return TrajectoryBatch._derived(
            obs=obs, actions=actions, rtg=rtg, timesteps=timesteps, padding_mask=mask
        )


def check_is_batch(batch: object, name: str) -> None:
    """Raise BatchError unless ``batch`` is a TrajectoryBatch; the message says how to make one.

    Example:
        >>> import torch
        >>> check_is_batch(torch.zeros(2, 3), "corrupt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dtlens.errors.BatchError: corrupt must be a TrajectoryBatch, got a Tensor of shape ...
    """
    if isinstance(batch, TrajectoryBatch):
        return
    build = "dtlens.TrajectoryBatch(obs=, actions=, rtg=, timesteps=)"
    edit = "patch_observation(clean, swap_instruction()) or set_rtg(clean, 0.0)"
    batches = isinstance(batch, list | tuple) and all(isinstance(b, TrajectoryBatch) for b in batch)
    if isinstance(batch, Tensor):
        got = f"a Tensor of shape {list(batch.shape)}"
        fix = f"a tensor is one field of a batch: build the whole window with {build}"
        fix += f", or edit the clean batch: {edit}" if name == "corrupt" else ""
    elif batches and len(batch) > 0:
        got = f"a {type(batch).__name__} of {len(batch)} TrajectoryBatches"
        fix = "join them into one batch with TrajectoryBatch.cat(...)"
    else:
        got = "None" if batch is None else f"a {type(batch).__name__}"
        fix = f"edit the clean batch ({edit})" if name == "corrupt" else f"build one with {build}"
    raise BatchError(f"{name} must be a TrajectoryBatch, got {got}; {fix}.")
