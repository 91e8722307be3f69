"""One-hot observation encoding, channel names, and the one-hot wrapper."""

from __future__ import annotations

import gymnasium
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from minigrid.wrappers import OneHotPartialObsWrapper

from dtlens.env import (
    MEMORY_ENV_ID,
    N_CHANNELS,
    N_COLOURS,
    N_OBJECTS,
    N_STATES,
    channel_index,
    channel_names,
    colour_channel,
    decode_observation,
    encode_observation,
    make_env,
    object_channel,
    state_channel,
)
from dtlens.errors import ObservationError


def test_constants_and_channel_names():
    assert (N_OBJECTS, N_COLOURS, N_STATES, N_CHANNELS) == (11, 6, 3, 20)
    names = channel_names()
    assert len(names) == 20
    assert names[:3] == ["object:unseen", "object:empty", "object:wall"]
    assert names[10:13] == ["object:agent", "colour:red", "colour:green"]
    assert names[16:] == ["colour:grey", "state:open", "state:closed", "state:locked"]
    assert [channel_index(n) for n in names] == list(range(20))
    assert (object_channel("key"), object_channel("ball")) == (5, 6)
    assert (colour_channel("green"), state_channel("locked")) == (12, 19)
    assert channel_index("color:green") == 12


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda: object_channel("cat"), ["'cat'", "key", "ball", "wall"]),
        (lambda: colour_channel("pink"), ["'pink'", "green", "grey"]),
        (lambda: state_channel("ajar"), ["'ajar'", "open", "locked"]),
        (lambda: channel_index("key"), ["'key'", "object:key"]),
        (lambda: channel_index("shape:key"), ["'shape:key'", "colour"]),
        (lambda: channel_index("object:dragon"), ["'dragon'", "lava"]),
    ],
)
def test_unknown_channel_names_raise(call, fragments):
    with pytest.raises(ObservationError) as err:
        call()
    for fragment in fragments:
        assert fragment in str(err.value)


def hand_image() -> tuple[np.ndarray, np.ndarray]:
    """A hand-built image and its hand-computed one-hot bits."""
    image = np.zeros((7, 7, 3), dtype=np.uint8)  # unseen / red / open everywhere
    expected = np.zeros((7, 7, 20), dtype=np.float32)
    expected[:, :, [0, 11, 17]] = 1
    for (x, y), cell, bits in [
        ((0, 0), (2, 5, 0), [2, 16, 17]),  # grey wall
        ((3, 6), (5, 1, 0), [5, 12, 17]),  # green key (the agent's own cell)
        ((6, 6), (4, 3, 2), [4, 14, 19]),  # locked purple door
        ((2, 1), (10, 4, 1), [10, 15, 18]),  # yellow agent, closed
    ]:
        image[x, y] = cell
        expected[x, y] = 0
        expected[x, y, bits] = 1
    return image, expected


def test_hand_built_image_numpy_and_torch():
    image, expected = hand_image()
    out = encode_observation(image)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(decode_observation(out), image)

    out_t = encode_observation(torch.from_numpy(image))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_array_equal(out_t.numpy(), expected)
    back = decode_observation(out_t)
    assert isinstance(back, torch.Tensor) and back.dtype == torch.int64
    np.testing.assert_array_equal(back.numpy(), image)
    # bool one-hot decodes too
    np.testing.assert_array_equal(decode_observation(out_t.bool()).numpy(), image)


def test_batched_shapes():
    image, expected = hand_image()
    batch = np.broadcast_to(image, (2, 3, 7, 7, 3)).astype(np.int64)
    out = encode_observation(torch.from_numpy(batch))
    assert out.shape == (2, 3, 7, 7, 20)
    np.testing.assert_array_equal(out[1, 2].numpy(), expected)
    assert encode_observation(np.zeros((0, 7, 7, 3), dtype=int)).shape == (0, 7, 7, 20)


def test_matches_minigrids_own_one_hot_wrapper():
    env = gymnasium.make(MEMORY_ENV_ID)
    reference = OneHotPartialObsWrapper(gymnasium.make(MEMORY_ENV_ID))
    for seed in range(3):
        raw = env.reset(seed=seed)[0]["image"]
        ref = reference.reset(seed=seed)[0]["image"]
        np.testing.assert_array_equal(encode_observation(raw), ref.astype(np.float32))


@st.composite
def index_grids(draw):
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.uint8, np.int32, np.int64]))
    fields = [
        draw(hnp.arrays(dtype, (batch, 7, 7), elements=st.integers(0, size - 1)))
        for size in (11, 6, 3)
    ]
    return np.stack(fields, axis=-1)


@settings(max_examples=40, deadline=None)
@given(grid=index_grids(), as_torch=st.booleans())
def test_round_trip_property(grid, as_torch):
    x = torch.from_numpy(grid) if as_torch else grid
    onehot = encode_observation(x)
    assert isinstance(onehot, torch.Tensor) == as_torch
    onehot_np = onehot.numpy() if as_torch else onehot
    assert onehot_np.shape == (*grid.shape[:-1], 20)
    assert (onehot_np.sum(-1) == 3).all()
    assert (onehot_np[..., :11].sum(-1) == 1).all() and (onehot_np[..., 17:].sum(-1) == 1).all()
    back = decode_observation(onehot)
    np.testing.assert_array_equal(back.numpy() if as_torch else back, grid)


@pytest.mark.parametrize(
    ("image", "fragments"),
    [
        (np.zeros((7, 7)), ["float64"]),
        (np.zeros((7, 7), dtype=int), ["[7, 7]", "[..., 7, 7, 3]"]),
        (np.zeros((6, 7, 3), dtype=int), ["[6, 7, 3]", "[..., 7, 7, 3]"]),
        (torch.zeros(2, 7, 7, 4, dtype=torch.long), ["[2, 7, 7, 4]", "[..., 7, 7, 3]"]),
        (torch.zeros(7, 7, 3), ["float32", "integer"]),
        (np.zeros((7, 7, 3), dtype=bool), ["bool"]),
    ],
)
def test_encode_rejects_bad_shape_and_dtype(image, fragments):
    with pytest.raises(ObservationError) as err:
        encode_observation(image)
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "fragments"),
    [
        (0, 11, ["object index 11", "0..10", "x=4, y=5"]),
        (1, 6, ["colour index 6", "0..5", "x=4, y=5"]),
        (2, -1, ["state index -1", "0..2", "x=4, y=5"]),
    ],
)
def test_encode_rejects_out_of_range(field, value, fragments):
    for as_torch in (False, True):
        image = np.zeros((2, 7, 7, 3), dtype=np.int64)
        image[1, 4, 5, field] = value
        with pytest.raises(ObservationError) as err:
            encode_observation(torch.from_numpy(image) if as_torch else image)
        for fragment in [*fragments, "(1,)"]:
            assert fragment in str(err.value)


def test_decode_rejects_bad_one_hot():
    good = encode_observation(np.zeros((7, 7, 3), dtype=int))
    two_objects = good.copy()
    two_objects[3, 4, 5] = 1
    with pytest.raises(ObservationError, match=r"x=3, y=4 has 2 hot object channels"):
        decode_observation(two_objects)
    no_state = good.copy()
    no_state[0, 6, 17] = 0
    with pytest.raises(ObservationError, match=r"x=0, y=6 has 0 hot state channels"):
        decode_observation(torch.from_numpy(no_state))
    half = good.copy()
    half[1, 1, 12] = 0.5
    with pytest.raises(ObservationError, match=r"0 or 1, found 0.5 .*channel 12 \(colour:green\)"):
        decode_observation(half)
    with pytest.raises(ObservationError, match=r"\[..., 7, 7, 20\], got \[7, 7, 19\]"):
        decode_observation(good[..., :19])


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        encode_observation(np.full((7, 7, 3), 99))


def test_wrapper_observation_is_encoded_unwrapped_image():
    env = make_env(MEMORY_ENV_ID, seed=5)
    obs, _ = env.reset()
    for action in [None, 2, 1, 2]:
        if action is not None:
            obs, *_ = env.step(action)
        raw = env.unwrapped.gen_obs()
        np.testing.assert_array_equal(obs["image"], encode_observation(raw["image"]))
        assert obs["direction"] == raw["direction"] and obs["mission"] == raw["mission"]
