"""Training windows on tiny hand-written trajectories: labels, padding and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtlens.data.demonstrations import Demonstrations
from dtlens.data.windows import IGNORE_TARGET, WindowSampler, train_val_split
from dtlens.env import encode_observation
from dtlens.errors import BatchError, ConfigError
from dtlens.model import TrajectoryBatch
from tests.conftest import build_model

PAD = 7


def step_image(i: int) -> np.ndarray:
    """A recognisable view: every cell empty, cell (0, 0) holds object i % 11."""
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    image[..., 0] = 1
    image[0, 0] = (i % 11, i % 6, 0)
    return image


def hand_demos() -> Demonstrations:
    """Episode A: 3 steps, actions 2 1 0, rewards 1/4 1/8 1/2 (RTG 7/8 5/8 1/2).
    Episode B: 2 steps, actions 3 2, no reward (truncated)."""
    return Demonstrations(
        obs=np.stack([step_image(i) for i in range(5)]),
        actions=np.array([2, 1, 0, 3, 2], dtype=np.int64),
        rewards=np.array([0.25, 0.125, 0.5, 0, 0], dtype=np.float32),
        timesteps=np.array([0, 1, 2, 0, 1], dtype=np.int64),
        episode_starts=np.array([0, 3], dtype=np.int64),
        terminated=np.array([True, False]),
        truncated=np.array([False, True]),
        header={},
    )


def test_every_window_once_with_hand_checked_labels_padding_and_masks():
    windows = list(WindowSampler(hand_demos(), n_steps=3, pad_action=PAD).iterate(10))
    assert len(windows) == 1
    w = windows[0]
    F, T, X = False, True, IGNORE_TARGET
    assert w.batch.padding_mask.tolist() == [[F, F, T], [F, T, T], [T, T, T], [F, F, T], [F, T, T]]
    assert w.loss_mask.tolist() == w.batch.padding_mask.tolist()
    assert w.batch.actions.tolist() == [[7, 7], [7, 2], [2, 1], [7, 7], [7, 3]]
    assert w.targets.tolist() == [[X, X, 2], [X, 2, 1], [2, 1, 0], [X, X, 3], [X, 3, 2]]
    # padding RTG = the first real step's RTG
    assert w.batch.rtg.tolist() == [
        [0.875] * 3,
        [0.875, 0.875, 0.625],
        [0.875, 0.625, 0.5],
        [0.0] * 3,
        [0.0] * 3,
    ]
    assert w.batch.timesteps.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 0, 0], [0, 0, 1]]
    # observations: zeros at padding, the one-hot of the right step elsewhere
    which = [[None, None, 0], [None, 0, 1], [0, 1, 2], [None, None, 3], [None, 3, 4]]
    for row, steps in enumerate(which):
        for col, step in enumerate(steps):
            expected = (
                np.zeros((7, 7, 20), np.float32)
                if step is None
                else encode_observation(step_image(step))
            )
            np.testing.assert_array_equal(w.batch.obs[row, col].numpy(), expected)
    assert w.batch.obs.dtype == torch.float32 and w.targets.dtype == torch.long


def test_windows_use_the_left_pad_recipe_of_trajectory_batch():
    # The window ending at step 1 of episode A, built by hand unpadded and padded with
    # TrajectoryBatch.left_pad (the recipe evaluation uses), must equal the sampler's.
    unpadded = TrajectoryBatch(
        obs=torch.from_numpy(encode_observation(np.stack([step_image(0), step_image(1)])))[None],
        actions=torch.tensor([[2]]),
        rtg=torch.tensor([[0.875, 0.625]]),
        timesteps=torch.tensor([[0, 1]]),
    ).left_pad(4, pad_action=PAD)
    w = next(WindowSampler(hand_demos(), n_steps=4, pad_action=PAD).iterate(2))
    got = w.batch[1]
    for name in ("obs", "actions", "rtg", "timesteps", "padding_mask"):
        assert torch.equal(getattr(got, name), getattr(unpadded, name)), name


def test_model_predictions_at_real_steps_ignore_the_padding():
    # The tiny model (4 timesteps) on a padded window predicts, at the last step, what it
    # predicts on the same steps unpadded: padding is masked, as in evaluation.
    model = build_model()
    w = next(WindowSampler(hand_demos(), n_steps=4, pad_action=model.cfg.n_actions).iterate(5))
    padded = model.action_logits(w.batch)[:, -1]
    for row in range(5):
        real = w.batch.padding_mask[row]
        unpadded = TrajectoryBatch(
            obs=w.batch.obs[row : row + 1, real],
            actions=w.batch.actions[row : row + 1, real[:-1]],
            rtg=w.batch.rtg[row : row + 1, real],
            timesteps=w.batch.timesteps[row : row + 1, real],
        )
        expected = model.action_logits(unpadded)[0, -1]
        torch.testing.assert_close(padded[row], expected, rtol=1e-4, atol=1e-5)


def test_sample_draws_window_ends_uniformly_over_steps():
    sampler = WindowSampler(hand_demos(), n_steps=3)
    every = next(sampler.iterate(5))
    key = [tuple(t) for t in every.targets.tolist()]  # the targets identify each window
    w = sampler.sample(5000, torch.Generator().manual_seed(0))
    counts = np.zeros(5)
    for row, targets in enumerate(w.targets.tolist()):
        i = key.index(tuple(targets))  # every sampled window is one of the 5 windows
        counts[i] += 1
        assert torch.equal(w.batch.obs[row], every.batch.obs[i])
        assert torch.equal(w.batch.rtg[row], every.batch.rtg[i])
    # uniform over the 5 steps (each end step equally likely), not over the 2 episodes
    assert np.all(np.abs(counts / 5000 - 0.2) < 0.03), counts
    again = sampler.sample(5000, torch.Generator().manual_seed(0))
    assert torch.equal(again.targets, w.targets)


def test_end_fraction_moves_windows_to_their_episodes_last_step():
    """P(window) by hand for p = 0.5: ends uniform over 5 steps (0.2 each), then half of
    A's windows (steps 0-2) move to step 2 and half of B's (steps 3-4) to step 4."""
    p = 0.5
    sampler = WindowSampler(hand_demos(), n_steps=3, end_fraction=p)
    key = [tuple(t) for t in next(sampler.iterate(5)).targets.tolist()]
    w = sampler.sample(5000, torch.Generator().manual_seed(1))
    counts = np.bincount([key.index(tuple(t)) for t in w.targets.tolist()], minlength=5)
    expected = [0.2 * (1 - p), 0.2 * (1 - p), 0.6 * p + 0.2 * (1 - p), 0.2 * (1 - p)]
    expected.append(0.4 * p + 0.2 * (1 - p))
    assert np.all(np.abs(counts / 5000 - np.array(expected)) < 0.03), counts
    always = WindowSampler(hand_demos(), n_steps=3, end_fraction=1.0)
    ends = {tuple(t) for t in always.sample(200, torch.Generator().manual_seed(0)).targets.tolist()}
    assert ends == {key[2], key[4]}


def test_episode_weighting_gives_every_episode_the_same_weight():
    """By hand: A (3 steps) and B (2 steps) each get 1/2; then uniform within each, so
    A's windows 1/6 each and B's 1/4 each (step weighting would give 0.2 to all)."""
    sampler = WindowSampler(hand_demos(), n_steps=3, weighting="episode")
    key = [tuple(t) for t in next(sampler.iterate(5)).targets.tolist()]
    w = sampler.sample(6000, torch.Generator().manual_seed(2))
    counts = np.bincount([key.index(tuple(t)) for t in w.targets.tolist()], minlength=5)
    expected = np.array([1 / 6, 1 / 6, 1 / 6, 1 / 4, 1 / 4])
    assert np.all(np.abs(counts / 6000 - expected) < 0.03), counts


def test_end_fraction_zero_draws_exactly_as_uniform_sampling():
    uniform = WindowSampler(hand_demos(), n_steps=3)
    biased = WindowSampler(hand_demos(), n_steps=3, end_fraction=0.0)
    a = uniform.sample(64, torch.Generator().manual_seed(3))
    b = biased.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(a.targets, b.targets)


def test_episode_selection_and_raw_observations():
    sampler = WindowSampler(hand_demos(), n_steps=2, one_hot=False, episode_indices=np.array([1]))
    assert len(sampler) == 2
    w = next(sampler.iterate(8))
    assert w.targets.tolist() == [[IGNORE_TARGET, 3], [3, 2]]
    assert w.batch.obs.shape == (2, 2, 7, 7, 3) and w.batch.obs.dtype == torch.float32
    np.testing.assert_array_equal(w.batch.obs[1, 1].numpy(), step_image(4).astype(np.float32))
    assert [len(b.targets) for b in WindowSampler(hand_demos(), 2).iterate(2)] == [2, 2, 1]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_steps": 0}, ConfigError, "n_steps"),
        ({"n_steps": 2, "pad_action": -1}, ConfigError, "pad_action"),
        ({"n_steps": 2, "episode_indices": np.array([2])}, ConfigError, "episode index 2"),
        ({"n_steps": 2, "end_fraction": 1.5}, ConfigError, r"end_fraction must be in \[0, 1\]"),
        ({"n_steps": 2, "end_fraction": "x"}, ConfigError, "end_fraction must be a float"),
        ({"n_steps": 2, "weighting": "steps"}, ConfigError, "weighting must be one of"),
        (
            {"n_steps": 2, "episode_indices": np.array([], dtype=np.int64)},
            BatchError,
            "no episodes",
        ),
    ],
)
def test_bad_sampler_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        WindowSampler(hand_demos(), **kwargs)
    with pytest.raises(ConfigError, match="batch_size"):
        WindowSampler(hand_demos(), 2).sample(0, torch.Generator())


def test_train_val_split_partitions_episodes():
    obs = np.ones((20, 7, 7, 3), dtype=np.uint8)
    demos = Demonstrations(
        obs,
        np.zeros(20, np.int64),
        np.zeros(20, np.float32),
        np.zeros(20, np.int64),
        np.arange(20),
        np.ones(20, bool),
        np.zeros(20, bool),
        {},
    )
    train, val = train_val_split(demos, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert sorted([*train.tolist(), *val.tolist()]) == list(range(20))
    assert np.array_equal(train_val_split(demos, 0.25, seed=3)[1], val)
    assert not np.array_equal(train_val_split(demos, 0.25, seed=4)[1], val)
    assert len(train_val_split(demos, 0.0, seed=0)[1]) == 0
    with pytest.raises(ConfigError, match="val_fraction"):
        train_val_split(demos, 1.0, seed=0)
