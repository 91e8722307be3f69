"""TrajectoryBatch and DTConfig validation: every bad input named, nothing coerced."""

from __future__ import annotations

import pytest
import torch

from dtlens import BatchError, ConfigError, DTConfig, TrajectoryBatch
from tests.conftest import build_batch


def make(**changes):
    fields = dict(
        obs=torch.zeros(2, 3, 7, 7, 20),
        actions=torch.zeros(2, 2, dtype=torch.long),
        rtg=torch.zeros(2, 3),
        timesteps=torch.zeros(2, 3, dtype=torch.long),
    )
    return TrajectoryBatch(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"obs": torch.zeros(3, 7, 7, 20)}, r"obs must have shape \[batch, step, x, y, channel\]"),
        ({"actions": torch.zeros(2, 5, dtype=torch.long)}, "actions cover 5 steps but obs has 3"),
        ({"actions": torch.zeros(2, 2)}, "actions must be an integer tensor, got torch.float32"),
        ({"rtg": torch.zeros(2, 4)}, r"rtg must have shape \[batch, step\] = \[2, 3\]"),
        ({"rtg": torch.zeros(2, 3, dtype=torch.long)}, "rtg must be a floating tensor"),
        ({"timesteps": torch.zeros(2, 3)}, "timesteps must be an integer tensor"),
        ({"padding_mask": torch.ones(2, 3)}, "padding_mask must be a bool tensor"),
        (
            {"padding_mask": torch.tensor([[True, True, False]] * 2)},
            "last timestep as padding",
        ),
        ({"obs": [[0.0]]}, "obs must be a torch.Tensor, got list"),
    ],
)
def test_batch_errors_name_the_problem(changes, message):
    with pytest.raises(BatchError, match=message):
        make(**changes)


def test_left_pad_follows_the_original_recipe():
    batch = build_batch(batch_size=1, n_steps=2, start_timestep=5)
    padded = batch.left_pad(4, pad_action=7)
    assert padded.timesteps.tolist() == [[0, 0, 5, 6]]
    assert padded.actions[0, :2].tolist() == [7, 7]
    assert torch.equal(padded.actions[0, 2:], batch.actions[0])
    assert torch.equal(padded.rtg[0, :2], batch.rtg[0, :1].expand(2))
    assert padded.obs[0, :2].abs().sum() == 0
    assert padded.padding_mask.tolist() == [[False, False, True, True]]
    with pytest.raises(BatchError, match="cannot left-pad a window of 2 steps to 1"):
        batch.left_pad(1, pad_action=7)


def test_batch_selection_repeat_and_cat():
    batch = build_batch(batch_size=3)
    assert torch.equal(batch[1].obs, batch.obs[1:2])
    assert torch.equal(batch[-1].obs, batch.obs[2:3])
    rep = batch.repeat(2)
    assert rep.batch_size == 6 and torch.equal(rep.rtg[2], batch.rtg[1])
    both = TrajectoryBatch.cat([batch, batch[0]])
    assert both.batch_size == 4 and torch.equal(both.actions[3], batch.actions[0])
    with pytest.raises(BatchError, match="different window shapes"):
        TrajectoryBatch.cat([batch, build_batch(n_steps=2)])


def test_cat_gives_unmasked_batches_an_all_real_mask():
    batch = build_batch(batch_size=2, n_steps=3)
    masked = batch[0].replace(padding_mask=torch.tensor([[False, True, True]]))
    both = TrajectoryBatch.cat([masked, batch])
    assert both.padding_mask.tolist() == [
        [False, True, True],
        [True, True, True],
        [True, True, True],
    ]
    assert torch.equal(both.obs, batch.obs[[0, 0, 1]])
    assert TrajectoryBatch.cat([batch, batch]).padding_mask is None
    with pytest.raises(BatchError, match="only some have rtg"):
        TrajectoryBatch.cat([batch, batch.replace(rtg=None)])


def test_config_derives_and_validates():
    cfg = DTConfig(n_layers=3, d_model=256, n_heads=8, d_mlp=256, n_ctx=26)
    assert (cfg.d_head, cfg.n_timesteps, cfg.state_dim, cfg.tokens_per_step) == (32, 9, 980, 3)
    clone = DTConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=8, n_ctx=17, model_type="clone")
    assert clone.n_timesteps == 9
    assert DTConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 30, "n_heads": 4}, "d_model=30 is not divisible by n_heads=4"),
        ({"act_fn": "tanh"}, "act_fn='tanh' is not supported"),
        ({"normalization": "RMS"}, "normalization='RMS' is not supported"),
        ({"n_layers": 0}, "n_layers=0 must be a positive int"),
        ({"time_embedding_bias": True}, "only applies to time_embedding='linear'"),
        ({"obs_shape": (7, 7)}, "obs_shape=.* must be three positive ints"),
        ({"max_timestep": -1}, "max_timestep=-1"),
        ({"n_ctx": 1}, "n_ctx=1 is too small"),
        ({"model_type": "gpt"}, "model_type='gpt' is not supported"),
    ],
)
def test_config_errors_name_field_and_value(changes, message):
    base = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=16, n_ctx=8)
    with pytest.raises(ConfigError, match=message):
        DTConfig(**{**base, **changes})


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match=r"unknown DTConfig fields \['colour'\]"):
        DTConfig.from_dict({"n_layers": 1, "colour": "red"})
