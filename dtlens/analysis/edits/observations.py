"""Edits of a batch's inputs: observation edits (`patch_observation`) and `set_rtg`.

Activation patching needs a clean and a corrupt input that differ in one fact. An
*edit* describes such a change to the one-hot observations ``[B, T, 7, 7, 20]`` of a
:class:`~dtlens.model.TrajectoryBatch`; :func:`patch_observation` applies it and
returns a new batch (the input's tensors are never written to). Edits:

- :func:`set_cell`: set the object / colour / state of one view cell at one timestep
  (or every real timestep); unspecified attributes keep their values.
- :func:`swap_instruction`: key <-> ball for the Memory task's instruction object,
  wherever a view shows it.
- :func:`flip_targets`: key <-> ball for the two target objects, wherever visible.
- :func:`compose` (or a list passed to :func:`patch_observation`): edits in order.
- any callable ``obs -> obs`` (it receives a copy, so it may edit in place).

The instruction and the targets are told apart by the Memory layout's geometry, not
by fixed view cells (the view is egocentric): see
:func:`dtlens.env.views.locate_memory_objects`. Padding steps
(``padding_mask`` False, or all-zero views) are never edited by those two edits.

Examples:
    >>> import torch
    >>> from dtlens.model import TrajectoryBatch
    >>> obs = torch.zeros(1, 2, 7, 7, 20)
    >>> obs[..., [1, 11, 17]] = 1  # every cell empty, red, open
    >>> batch = TrajectoryBatch(obs, torch.zeros(1, 1, dtype=torch.long),
    ...                         torch.full((1, 2), 0.9), torch.arange(2)[None])
    >>> edited = patch_observation(batch, set_cell(-1, 2, 6, object="key", colour="green"))
    >>> edited.obs[0, 1, 2, 6].nonzero().flatten().tolist(), batch.obs[0, 1, 2, 6, 5].item()
    ([5, 12, 17], 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dtlens.env.channels import (
    COLOUR_CHANNELS,
    OBJECT_CHANNELS,
    STATE_CHANNELS,
    VIEW_SIZE,
    colour_channel,
    object_channel,
    state_channel,
)
from dtlens.env.views import check_views, locate_memory_objects
from dtlens.errors import BatchError, NonFiniteError, ObservationError
from dtlens.model.batch import TrajectoryBatch

__all__ = [
    "ComposedEdit",
    "FlipTargets",
    "ObservationEdit",
    "SetCell",
    "SwapInstruction",
    "compose",
    "flip_targets",
    "patch_observation",
    "set_cell",
    "set_rtg",
    "swap_instruction",
]

Obs = Float[Tensor, "batch step x y channel"]
StepMask = Bool[Tensor, "batch step"]
_KEY, _BALL = object_channel("key"), object_channel("ball")
_FIELDS = (
    ("object", OBJECT_CHANNELS, object_channel),
    ("colour", COLOUR_CHANNELS, colour_channel),
    ("state", STATE_CHANNELS, state_channel),
)


class ObservationEdit:
    """Base class of edits: ``apply(obs, real)`` returns a new observation tensor.

    ``real`` is ``[batch, step]`` bool, True at timesteps that are not padding.
    Calling an edit on a batch is the same as ``patch_observation(batch, edit)``.
    """

    def apply(self, obs: Obs, real: StepMask) -> Obs:
        """Return the edited copy of ``obs`` (never modify ``obs`` itself)."""
        raise NotImplementedError

    def __call__(self, batch: TrajectoryBatch) -> TrajectoryBatch:
        """``patch_observation(batch, self)``."""
        return patch_observation(batch, self)


@dataclass(frozen=True)
class SetCell(ObservationEdit):
    """Set attributes of view cell ``(x, y)``; built by :func:`set_cell`."""

    timestep: int | Literal["all"]
    x: int
    y: int
    object: str | None = None
    colour: str | None = None
    state: str | None = None

    def apply(self, obs: Obs, real: StepMask) -> Obs:
        """Write the named attributes, then check the cell is still valid one-hot."""
        check_views(obs)
        n_steps = obs.shape[1]
        out = obs.clone()
        if self.timestep == "all":
            index: tuple = (real, self.x, self.y)  # every real step of every row
        elif -n_steps <= self.timestep < n_steps:
            index = (slice(None), self.timestep, self.x, self.y)
        else:
            raise ObservationError(
                f"set_cell timestep {self.timestep} is out of range for a window of "
                f"{n_steps} steps; expected -{n_steps}..{n_steps - 1} or 'all'"
            )
        cell = out[index]  # [n_cells, channel]
        for field, channels, lookup in _FIELDS:
            if getattr(self, field) is not None:
                cell[..., channels] = 0
                cell[..., lookup(getattr(self, field))] = 1
        for field, channels, _ in _FIELDS:
            counts = (cell[..., channels] != 0).sum(-1)
            if bool((counts != 1).any()):
                raise ObservationError(
                    f"after set_cell, cell (x={self.x}, y={self.y}) at timestep "
                    f"{self.timestep} has {int(counts[counts != 1][0])} hot {field} channels "
                    f"(expected exactly 1); pass {field}=... too, e.g. for a padding step"
                )
        out[index] = cell
        return out


@dataclass(frozen=True)
class SwapInstruction(ObservationEdit):
    """Key <-> ball at the instruction object's cells; built by :func:`swap_instruction`."""

    def apply(self, obs: Obs, real: StepMask) -> Obs:
        """Swap the key and ball channels where :func:`locate_memory_objects` finds the
        instruction."""

        instruction, _ = locate_memory_objects(obs, real)
        return _swap_key_ball(obs, instruction)


@dataclass(frozen=True)
class FlipTargets(ObservationEdit):
    """Key <-> ball at the two target objects' cells; built by :func:`flip_targets`."""

    def apply(self, obs: Obs, real: StepMask) -> Obs:
        """Swap the key and ball channels where :func:`locate_memory_objects` finds targets."""

        _, targets = locate_memory_objects(obs, real)
        return _swap_key_ball(obs, targets)


@dataclass(frozen=True)
class ComposedEdit(ObservationEdit):
    """Several edits applied in order; built by :func:`compose`."""

    edits: tuple[ObservationEdit | Callable[[Obs], Obs], ...]

    def apply(self, obs: Obs, real: StepMask) -> Obs:
        """Apply each edit to the previous one's output."""
        for edit in self.edits:
            obs = _apply_one(edit, obs, real)
        return obs


def set_cell(
    timestep: int | Literal["all"],
    x: int,
    y: int,
    object: str | None = None,
    colour: str | None = None,
    state: str | None = None,
) -> SetCell:
    """An edit setting the object, colour and/or state of view cell ``(x, y)``.

    Cells are indexed ``[x][y]`` like MiniGrid's image: the agent sits at ``(3, 6)``
    looking towards ``y = 0``. Attributes left ``None`` keep their values; the cell
    must be valid one-hot afterwards (exactly one object, colour and state bit).

    Args:
        timestep: index into the window (negative counts from the end), or ``"all"``
            for every real timestep (padding steps are skipped).
        x: view column, 0..6.
        y: view row, 0..6.
        object: a MiniGrid object name (``"key"``, ``"ball"``, ``"empty"``, ...).
        colour: a MiniGrid colour name (``"green"``, ...).
        state: ``"open"``, ``"closed"`` or ``"locked"``.

    Raises:
        ObservationError: for a cell outside 0..6, an unknown name (the message lists
            the valid ones), no attribute given, or (when applied) a timestep out of
            range or a cell left without exactly one bit in a field.

    Examples:
        >>> set_cell(0, 2, 6, object="ball")
        SetCell(timestep=0, x=2, y=6, object='ball', colour=None, state=None)
    """
    if timestep != "all" and (isinstance(timestep, bool) or not isinstance(timestep, int)):
        raise ObservationError(f"timestep must be an int or 'all', got {timestep!r}")
    for axis, value in (("x", x), ("y", y)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < VIEW_SIZE:
            raise ObservationError(
                f"cell {axis}={value!r} is outside the view; expected an int in 0..{VIEW_SIZE - 1}"
            )
    if object is None and colour is None and state is None:
        raise ObservationError("set_cell needs at least one of object=, colour=, state=")
    for (_, _, lookup), name in zip(_FIELDS, (object, colour, state), strict=True):
        if name is not None:
            lookup(name)  # raises ObservationError listing the valid names
    return SetCell(timestep, x, y, object, colour, state)


def swap_instruction() -> SwapInstruction:
    """An edit turning the Memory task's instruction key into a ball and vice versa.

    Applies at every timestep whose view shows the instruction (including when the
    agent carries it); see the module docstring for how it is told apart from the
    targets.

    Examples:
        >>> swap_instruction()
        SwapInstruction()
    """
    return SwapInstruction()


def flip_targets() -> FlipTargets:
    """An edit swapping the two target objects (key <-> ball) wherever they are visible.

    Examples:
        >>> flip_targets()
        FlipTargets()
    """
    return FlipTargets()


def compose(*edits: ObservationEdit | Callable[[Obs], Obs]) -> ComposedEdit:
    """One edit applying ``edits`` left to right (nested compositions are flattened).

    Raises:
        ObservationError: if no edit is given or one is not an edit/callable.

    Examples:
        >>> compose(swap_instruction(), flip_targets()).edits
        (SwapInstruction(), FlipTargets())
    """
    if not edits:
        raise ObservationError("compose needs at least one edit")
    flat: list[ObservationEdit | Callable[[Obs], Obs]] = []
    for edit in edits:
        if not callable(edit) and not isinstance(edit, ObservationEdit):
            raise ObservationError(
                f"{edit!r} is not an edit: expected set_cell(...), swap_instruction(), "
                "flip_targets(), compose(...) or a callable obs -> obs"
            )
        flat.extend(edit.edits if isinstance(edit, ComposedEdit) else [edit])
    return ComposedEdit(tuple(flat))


def patch_observation(
    batch: TrajectoryBatch,
    edit: ObservationEdit | Callable[[Obs], Obs] | Sequence[ObservationEdit | Callable],
) -> TrajectoryBatch:
    """A new batch whose observations are ``batch.obs`` with ``edit`` applied.

    The input batch and its tensors are left untouched; the other fields are shared
    with the new batch (they are not modified either).

    Args:
        batch: the clean batch.
        edit: an edit, a callable ``obs [B,T,7,7,20] -> obs`` (given a copy), or a
            list of them applied in order.

    Raises:
        ObservationError: from the edit (bad cell, timestep, unlocatable view), or if
            a callable returns a tensor of another shape/dtype.

    Examples:
        >>> import torch
        >>> obs = torch.zeros(1, 2, 7, 7, 20)
        >>> obs[..., [1, 11, 17]] = 1  # every cell empty, red, open
        >>> clean = TrajectoryBatch(obs, torch.zeros(1, 1, dtype=torch.long),
        ...                         torch.full((1, 2), 0.9), torch.arange(2)[None])
        >>> wall = set_cell("all", 3, 5, object="wall", colour="grey")
        >>> edits = [wall, set_cell(0, 3, 5, state="closed")]
        >>> corrupt = patch_observation(clean, edits)
        >>> corrupt.obs[0, :, 3, 5].nonzero().tolist(), clean.obs[0, :, 3, 5].sum().item()
        ([[0, 2], [0, 16], [0, 18], [1, 2], [1, 16], [1, 17]], 6.0)
    """
    if isinstance(edit, Sequence) and not isinstance(edit, str):
        edit = compose(*edit)
    real = _real_steps(batch)
    return batch.replace(obs=_apply_one(edit, batch.obs, real))


def set_rtg(
    batch: TrajectoryBatch,
    value: float | Float[Tensor, "..."],
    timesteps: int | Sequence[int] | None = None,
) -> TrajectoryBatch:
    """A new batch with its return-to-go tokens set to ``value``.

    Args:
        batch: a decision-transformer batch (with ``rtg``).
        value: the new RTG, a float or a tensor broadcastable to the chosen
            ``[batch, n_chosen]`` entries.
        timesteps: window indices to change (negative allowed); ``None`` changes every
            RTG token, padding included (padding carries the first real RTG, as in the
            original project) — the in-distribution way to change the RTG in Memory,
            where it is constant along an episode.

    Raises:
        BatchError: if the batch has no RTG, an index is out of range, or ``value``
            is not a number (or a tensor of numbers) or does not broadcast.
        NonFiniteError: ``value`` is NaN or inf (also a BatchError).

    Examples:
        >>> import torch
        >>> b = TrajectoryBatch(torch.zeros(1, 3, 7, 7, 20), torch.zeros(1, 2, dtype=torch.long),
        ...                     torch.full((1, 3), 0.5), torch.arange(3)[None])
        >>> set_rtg(b, 0.0, timesteps=[-1]).rtg.tolist(), b.rtg[0, -1].item()
        ([[0.5, 0.5, 0.0]], 0.5)
    """
    if batch.rtg is None:
        raise BatchError("this batch has no rtg (a behavioural clone's batch); nothing to set")
    n_steps = batch.n_steps
    if timesteps is None:
        index = list(range(n_steps))
    else:
        index = [timesteps] if isinstance(timesteps, int) else list(timesteps)
        bad = [t for t in index if isinstance(t, bool) or not isinstance(t, int)]
        bad += [t for t in index if t not in bad and not -n_steps <= t < n_steps]
        if bad or not index:
            raise BatchError(
                f"RTG timesteps {bad or index} are invalid for a window of {n_steps} steps; "
                f"expected ints in -{n_steps}..{n_steps - 1}"
            )
    rtg = batch.rtg.clone()
    value = _rtg_value(value, rtg)
    try:
        rtg[:, index] = value.expand(batch.batch_size, len(index))
    except RuntimeError as e:
        raise BatchError(
            f"RTG value of shape {list(value.shape)} does not broadcast to "
            f"[batch={batch.batch_size}, timesteps={len(index)}]; pass a float, or a tensor "
            f"of shape [{batch.batch_size}, 1] for one value per row."
        ) from e
    return batch.replace(rtg=rtg)


def _rtg_value(value: object, rtg: Tensor) -> Tensor:
    """``value`` as a tensor of ``rtg``'s dtype and device: numbers only, all finite."""
    tensor = value if isinstance(value, Tensor) else None
    if tensor is None and not isinstance(value, bool | str | bytes):
        try:  # floats, ints, numpy scalars and arrays, lists of numbers
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            tensor = None
    if tensor is None or tensor.dtype == torch.bool or tensor.dtype.is_complex:
        raise BatchError(
            f"set_rtg needs a number (or a tensor of numbers) as value, got {value!r} "
            f"({type(value).__name__}); pass the return-to-go as a float, e.g. "
            "set_rtg(batch, 0.9)."
        )
    tensor = tensor.to(dtype=rtg.dtype, device=rtg.device)
    if not bool(torch.isfinite(tensor).all()):
        raise NonFiniteError(
            f"set_rtg got the non-finite value {tensor.flatten()[:5].tolist()}; "
            "returns-to-go must be finite numbers (e.g. 0.9 to ask for success, 0.0 for "
            "failure)."
        )
    return tensor


def _swap_key_ball(obs: Obs, mask: Bool[Tensor, "batch step x y"]) -> Obs:
    out = obs.clone()
    out[..., _KEY] = torch.where(mask, obs[..., _BALL], obs[..., _KEY])
    out[..., _BALL] = torch.where(mask, obs[..., _KEY], obs[..., _BALL])
    return out


def _real_steps(batch: TrajectoryBatch) -> StepMask:
    real = batch.obs.flatten(2).any(-1)
    return real if batch.padding_mask is None else real & batch.padding_mask


def _apply_one(edit: ObservationEdit | Callable[[Obs], Obs], obs: Obs, real: StepMask) -> Obs:
    if isinstance(edit, ObservationEdit):
        out = edit.apply(obs, real)
    elif callable(edit):
        out = edit(obs.clone())
    else:
        raise ObservationError(
            f"{edit!r} is not an edit: expected set_cell(...), swap_instruction(), "
            "flip_targets(), compose(...), a callable obs -> obs, or a list of them"
        )
    if not isinstance(out, Tensor) or out.shape != obs.shape or out.dtype != obs.dtype:
        got = f"{list(out.shape)} {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
        raise ObservationError(
            f"edit {edit!r} returned {got}; expected a tensor {list(obs.shape)} {obs.dtype}"
        )
    return out
