"""The checks a :class:`~dtlens.model.batch.TrajectoryBatch` runs on its fields.

Shapes and index dtypes on construction; values (finite observations and RTGs, one-hot
grids holding only 0 and 1, a left-padding mask) on construction and whenever a field
is replaced. Each raises the named :class:`~dtlens.errors.BatchError` subclass whose
message says what was found and how to fix it; none casts or copies the batch's tensors.

Example:
    >>> import torch
    >>> is_zero_one(torch.tensor([0.0, 1.0, 1.0])), is_finite(torch.tensor([1.0, float("nan")]))
    (True, False)
    >>> check_left_padding(torch.tensor([[False, True, True]]))  # padding first: fine
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool
from torch import Tensor

from dtlens.errors import BatchError, NonFiniteError, OneHotError, PaddingMaskError
from dtlens.model.config import ONE_HOT_CHANNELS  # grids with this many channels: 0/1

__all__ = [
    "check_index_dtype",
    "check_left_padding",
    "check_obs_values",
    "check_shape",
    "describe_non_finite",
    "is_finite",
    "is_zero_one",
]

#: Values per chunk of the 0/1 check (a temporary of this size, not one of the batch's).
_CHUNK = 1 << 18
#: Integer dtypes ``nn.Embedding`` reads (timesteps and discrete actions index embeddings).
_INDEX_DTYPES = (torch.int64, torch.int32)


def check_shape(name: str, tensor: Tensor, expected: tuple[int, ...], dims: str) -> None:
    if not isinstance(tensor, Tensor):
        raise BatchError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tuple(tensor.shape) != expected:
        raise BatchError(
            f"{name} must have shape {dims} = {list(expected)} to match obs, "
            f"got {list(tensor.shape)}."
        )


def check_index_dtype(name: str, tensor: Tensor, why: str) -> None:
    if tensor.dtype in _INDEX_DTYPES:
        return
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise BatchError(
            f"{name} must be an integer tensor, got {tensor.dtype}; {why}: use {name}.long()."
        )
    wraps = ""
    if tensor.dtype in (torch.uint8, torch.int8, torch.int16):
        wraps = f" ({tensor.dtype} overflows past {torch.iinfo(tensor.dtype).max})"
    raise BatchError(
        f"{name} must be int64 (or int32), got {tensor.dtype}{wraps}; {why}, which reads "
        f"only int64/int32: use {name}.long()."
    )


def check_obs_values(obs: Tensor) -> None:
    """Finite observations; one-hot grids (``[B, T, x, y, 20]``) hold only 0 and 1."""
    if obs.dtype == torch.bool or obs.numel() == 0:
        return
    if obs.ndim == 5 and obs.shape[-1] == ONE_HOT_CHANNELS:
        if is_zero_one(obs):  # also rules out NaN and inf
            return
    elif is_finite(obs):
        return
    if not is_finite(obs):
        raise NonFiniteError(
            f"obs holds {describe_non_finite(obs)}; observations must be finite. Check the data "
            "pipeline (a division by a zero std, an uninitialised buffer)."
        )
    bad = ~(obs.eq(0) | obs.eq(1))
    where, n_bad = [int(i) for i in bad.nonzero()[0]], int(bad.sum())
    raise OneHotError(
        f"obs {list(obs.shape)} are one-hot grids ({ONE_HOT_CHANNELS} channels) but hold "
        f"{n_bad} value{'s' if n_bad > 1 else ''} other than 0 and 1 "
        f"(e.g. {obs[tuple(where)].item():g} at "
        f"{where}); encode MiniGrid images [..., 7, 7, 3] with "
        "dtlens.encode_observation(image), and do not normalise or add noise to one-hot "
        "observations."
    )


def is_finite(tensor: Tensor) -> bool:
    """No NaN or inf (integers always).

    A finite sum means finite values (NaN and inf propagate); only a non-finite sum,
    which an overflow could also give, is confirmed element by element.
    """
    if not tensor.dtype.is_floating_point or tensor.numel() == 0:
        return True
    return math.isfinite(tensor.sum()) or bool(torch.isfinite(tensor).all())


def is_zero_one(tensor: Tensor) -> bool:
    """Every value is 0 or 1 (so none is NaN or inf).

    Integers are 0/1 when their range is ``[0, 1]``. For floats ``x - x * x`` is 0
    exactly at 0 and 1 (and non-zero, NaN or ``-inf`` anywhere else), so its largest
    absolute value is 0 only for 0/1 data. It is computed in chunks of ``_CHUNK``
    values, a small temporary that stays in cache.
    """
    if not tensor.dtype.is_floating_point:
        low, high = torch.aminmax(tensor)
        return bool((low >= 0) & (high <= 1))
    flat = tensor.reshape(-1)
    if flat.numel() <= _CHUNK:
        return float(_distance_from_zero_one(flat)) == 0
    return float(torch.stack([_distance_from_zero_one(c) for c in flat.split(_CHUNK)]).amax()) == 0


def _distance_from_zero_one(values: Tensor) -> Tensor:
    """``max |x - x * x|``: 0 for 0/1 values, positive, inf or NaN otherwise."""
    return torch.addcmul(values, values, values, value=-1).abs_().amax()


def describe_non_finite(tensor: Tensor) -> str:
    """``"2 NaN and 1 inf values (the first at [0, 3])"``, for error messages."""
    nan, inf = int(tensor.isnan().sum()), int(tensor.isinf().sum())
    first = [int(i) for i in (~torch.isfinite(tensor)).nonzero()[0]]
    return f"{nan} NaN and {inf} inf values (the first at {first})"


def check_left_padding(mask: Bool[Tensor, "batch step"]) -> None:
    """Each row: padding steps (False) first, then real steps (True), the last one real."""
    if bool(mask[:, -1].all()) and torch.equal(mask, mask.cummax(dim=1).values):
        return
    if not bool(mask[:, -1].all()):
        row = int((~mask[:, -1]).nonzero()[0, 0])
        raise PaddingMaskError(
            f"padding_mask marks the last timestep as padding in row {row} "
            f"({mask[row].tolist()}); windows are left-padded, so the last step must be "
            "real. Put the padding first, e.g. with batch.left_pad(n_steps, pad_action)."
        )
    row = int((mask != mask.cummax(dim=1).values).any(1).nonzero()[0, 0])
    raise PaddingMaskError(
        f"padding_mask row {row} is {mask[row].tolist()}: a padding step (False) follows "
        "a real one (True), but windows are left-padded (all padding first, then the "
        "real steps). Left-pad with batch.left_pad(n_steps, pad_action), or drop the "
        "steps in between from the window."
    )
