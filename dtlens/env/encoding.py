"""One-hot encoding and decoding of MiniGrid's partial view.

MiniGrid's ``gen_obs()["image"]`` is a ``[7, 7, 3]`` integer array indexed
``[x][y]`` (the agent sits at ``[3][6]`` facing ``y = 0``); each cell holds
``(object index, colour index, state index)`` from MiniGrid's ``OBJECT_TO_IDX``,
``COLOR_TO_IDX`` and ``STATE_TO_IDX``. The one-hot encoding has 20 channels per cell
(11 objects, 6 colours, 3 states; see :mod:`dtlens.env.channels`), the same layout as
``minigrid.wrappers.OneHotPartialObsWrapper``.

Type rule: torch in, torch out; anything else goes through ``numpy.asarray`` and
comes back as a numpy array. :func:`encode_observation` returns float32 (on the input's
device for torch); :func:`decode_observation` returns int64.

Examples:
    >>> import numpy as np
    >>> image = np.zeros((7, 7, 3), dtype=np.uint8)
    >>> image[3, 6] = (5, 1, 0)  # a green key
    >>> onehot = encode_observation(image)
    >>> onehot.shape, [channel_names()[c] for c in np.flatnonzero(onehot[3, 6])]
    ((7, 7, 20), ['object:key', 'colour:green', 'state:open'])
    >>> bool((decode_observation(onehot) == image).all())
    True
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

from dtlens.env.channels import (
    _FIELDS,
    _NAMES,
    _OFFSETS,
    _SIZES,
    _SLICES,
    N_CHANNELS,
    VIEW_SIZE,
    channel_names,
)
from dtlens.errors import ObservationError

__all__ = ["decode_observation", "encode_observation", "model_observations"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _as_array(x: Any, what: str) -> np.ndarray | torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ObservationError(f"{what} must be a numpy array or torch tensor: {e}") from e


def _check_trailing_shape(x: np.ndarray | torch.Tensor, last: int, what: str) -> None:
    shape = tuple(x.shape)
    if len(shape) < 3 or shape[-3:] != (VIEW_SIZE, VIEW_SIZE, last):
        raise ObservationError(
            f"{what} must have shape [..., {VIEW_SIZE}, {VIEW_SIZE}, {last}], got {list(shape)}"
        )


def _first(mask: np.ndarray | torch.Tensor) -> tuple[int, ...] | None:
    """Index of the first True element of ``mask``, or None."""
    if not bool(mask.any()):
        return None
    hits = mask.nonzero() if isinstance(mask, torch.Tensor) else np.argwhere(mask)
    return tuple(int(i) for i in hits[0])


def _where(index: tuple[int, ...]) -> str:
    *batch, x, y = index
    return f"cell x={x}, y={y}" + (f" of batch element {tuple(batch)}" if batch else "")


def encode_observation(image: ArrayT) -> ArrayT:
    """One-hot encode MiniGrid index images ``[..., 7, 7, 3]`` -> ``[..., 7, 7, 20]``.

    Args:
        image: Integer ``(object, colour, state)`` indices, one ``[7, 7, 3]`` view or a
            batch ``[..., 7, 7, 3]``; a torch tensor or anything numpy accepts.

    Returns:
        float32 one-hot with exactly three hot channels per cell (channel order in
        :func:`channel_names`): a torch tensor on the same device for torch input, a
        numpy array otherwise.

    Raises:
        ObservationError: For a non-integer dtype, a wrong trailing shape, or an index
            out of range (the message gives the value, its cell and the valid range).

    Examples:
        >>> import torch
        >>> image = torch.zeros(2, 7, 7, 3, dtype=torch.long)
        >>> image[1, 0, 0] = torch.tensor([2, 5, 0])  # a grey wall
        >>> out = encode_observation(image)
        >>> out.shape, out.dtype, out[1, 0, 0].nonzero().flatten().tolist()
        (torch.Size([2, 7, 7, 20]), torch.float32, [2, 16, 17])
    """
    x = _as_array(image, "image")
    is_torch = isinstance(x, torch.Tensor)
    integer = (
        not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)
        if is_torch
        else x.dtype.kind in "iu"
    )
    if not integer:
        raise ObservationError(
            f"image must hold integer (object, colour, state) indices, got dtype {x.dtype}; "
            "cast with .astype(int) / .long() if the values are whole numbers"
        )
    _check_trailing_shape(x, 3, "image")
    for field in range(3):
        values = x[..., field]
        bad = _first((values < 0) | (values >= _SIZES[field]))
        if bad is not None:
            raise ObservationError(
                f"{_FIELDS[field]} index {int(values[bad])} at {_where(bad)} is out of "
                f"range; expected 0..{_SIZES[field] - 1} ({', '.join(_NAMES[field])})"
            )
    if is_torch:
        offsets = torch.tensor(_OFFSETS, dtype=torch.long, device=x.device)
        out = torch.zeros(*x.shape[:-1], N_CHANNELS, dtype=torch.float32, device=x.device)
        return out.scatter_(-1, x.long() + offsets, 1.0)
    out = np.zeros((*x.shape[:-1], N_CHANNELS), dtype=np.float32)
    np.put_along_axis(out, x.astype(np.intp) + np.asarray(_OFFSETS, dtype=np.intp), 1.0, axis=-1)
    return out


def model_observations(image: ArrayT, one_hot: bool) -> ArrayT:
    """Raw MiniGrid views ``[..., 7, 7, 3]`` as a model reads them: one-hot
    (:func:`encode_observation`) for a model of one-hot grids (``model.cfg.one_hot_obs``),
    else the raw indices as float32.

    Example:
        >>> import torch
        >>> raw = torch.zeros(1, 7, 7, 3, dtype=torch.long)
        >>> model_observations(raw, True).shape, model_observations(raw, False).dtype
        (torch.Size([1, 7, 7, 20]), torch.float32)
    """
    if one_hot:
        return encode_observation(image)
    x = _as_array(image, "image")
    return x.float() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def decode_observation(onehot: ArrayT) -> ArrayT:
    """Turn one-hot ``[..., 7, 7, 20]`` back into index images ``[..., 7, 7, 3]``.

    Args:
        onehot: One-hot cells (any real or bool dtype) whose entries are all 0 or 1 and
            that have exactly one hot object, colour and state channel each.

    Returns:
        int64 ``(object, colour, state)`` indices: torch for torch input, else numpy.

    Raises:
        ObservationError: For a wrong trailing shape, an entry other than 0/1, or a cell
            without exactly one hot bit in a field (the message names cell and count).

    Examples:
        >>> import numpy as np
        >>> onehot = np.zeros((7, 7, 20), dtype=np.float32)
        >>> onehot[..., [1, 11, 17]] = 1  # every cell empty / red / open
        >>> onehot[2, 6] = 0
        >>> onehot[2, 6, [6, 12, 17]] = 1  # a green ball left of the agent
        >>> decode_observation(onehot)[2, 6].tolist()
        [6, 1, 0]
    """
    x = _as_array(onehot, "onehot")
    is_torch = isinstance(x, torch.Tensor)
    if x.dtype.is_complex if is_torch else x.dtype.kind not in "biuf":
        raise ObservationError(f"onehot must hold real 0/1 values, got dtype {x.dtype}")
    _check_trailing_shape(x, N_CHANNELS, "onehot")
    if is_torch and x.dtype == torch.bool:
        x = x.to(torch.uint8)  # argmax is not defined on bool tensors
    bad = _first((x != 0) & (x != 1))
    if bad is not None:
        raise ObservationError(
            f"onehot entries must be 0 or 1, found {float(x[bad])} at {_where(bad[:-1])}, "
            f"channel {bad[-1]} ({channel_names()[bad[-1]]})"
        )
    fields = []
    for field, channels in enumerate(_SLICES):
        block = x[..., channels]
        counts = block.sum(-1) if is_torch else block.sum(-1, dtype=np.int64)
        bad = _first(counts != 1)
        if bad is not None:
            raise ObservationError(
                f"{_where(bad)} has {int(counts[bad])} hot {_FIELDS[field]} channels; "
                f"expected exactly 1 among channels {channels.start}..{channels.stop - 1}"
            )
        fields.append(block.argmax(-1) if is_torch else block.argmax(-1).astype(np.int64))
    return torch.stack(fields, -1) if is_torch else np.stack(fields, -1)
