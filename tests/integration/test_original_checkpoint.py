"""dtlens.load on the original project's MemoryDT variant agrees with an independent forward."""

from __future__ import annotations

import pytest
import torch

import dtlens
from dtlens.model import TrajectoryBatch
from tests.conftest import ORIGINAL_DT, requires_shared
from tests.reference import reference_forward

pytestmark = requires_shared(ORIGINAL_DT)
TOL = 1e-5


@pytest.fixture(scope="module")
def raw():
    return torch.load(ORIGINAL_DT, weights_only=True)


@pytest.fixture(scope="module")
def model():
    return dtlens.load(ORIGINAL_DT)


def one_hot_batch(n_steps: int, batch_size: int = 3, seed: int = 0) -> TrajectoryBatch:
    """Valid one-hot grids (one object, colour and state bit per cell), random actions/RTG/time."""
    g = torch.Generator().manual_seed(seed)
    obj = torch.randint(0, 11, (batch_size, n_steps, 7, 7), generator=g)
    col = torch.randint(0, 6, (batch_size, n_steps, 7, 7), generator=g)
    sta = torch.randint(0, 3, (batch_size, n_steps, 7, 7), generator=g)
    obs = torch.cat(
        [
            torch.nn.functional.one_hot(obj, 11),
            torch.nn.functional.one_hot(col, 6),
            torch.nn.functional.one_hot(sta, 3),
        ],
        dim=-1,
    ).float()
    start = torch.randint(0, 40, (batch_size, 1), generator=g)
    return TrajectoryBatch(
        obs=obs,
        actions=torch.randint(0, 7, (batch_size, n_steps - 1), generator=g),
        rtg=torch.rand(batch_size, n_steps, generator=g),
        timesteps=start + torch.arange(n_steps),
    )


def assert_matches_reference(model, raw, batch: TrajectoryBatch) -> None:
    ref = reference_forward(raw, batch.obs, batch.actions, batch.rtg, batch.timesteps)
    logits, cache = model.run_with_cache(batch)
    torch.testing.assert_close(logits, ref["logits"], atol=TOL, rtol=0)
    for layer in range(model.cfg.n_layers):
        torch.testing.assert_close(
            cache[f"blocks.{layer}.hook_resid_pre"], ref[f"resid_pre.{layer}"], atol=TOL, rtol=0
        )
        torch.testing.assert_close(
            cache[f"blocks.{layer}.attn.hook_pattern"], ref[f"pattern.{layer}"], atol=TOL, rtol=0
        )
    last = model.cfg.n_layers - 1
    torch.testing.assert_close(
        cache[f"blocks.{last}.hook_resid_post"], ref["resid_final"], atol=TOL, rtol=0
    )
    torch.testing.assert_close(cache["hook_embed"], ref["tokens"], atol=TOL, rtol=0)


def test_config_read_from_checkpoint(model):
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.n_ctx) == (2, 128, 4, 256, 26)
    assert cfg.gated_mlp and cfg.act_fn == "relu" and cfg.normalization == "LN"
    assert cfg.obs_shape == (7, 7, 20) and cfg.max_timestep == 1000 and cfg.n_timesteps == 9


@pytest.mark.parametrize("n_steps", [1, 4, 9])
def test_unpadded_context_matches_reference(model, raw, n_steps):
    assert_matches_reference(model, raw, one_hot_batch(n_steps, seed=n_steps))


@pytest.mark.parametrize("n_steps", [1, 4])
def test_left_padding_as_tokens_matches_reference(model, raw, n_steps):
    """The original evaluation's recipe: padding run as ordinary tokens (no mask)."""
    padded = one_hot_batch(n_steps, seed=10 + n_steps).left_pad(9, pad_action=7)
    assert_matches_reference(model, raw, padded.replace(padding_mask=None))


@pytest.mark.parametrize("n_steps", [1, 4])
def test_masked_left_padding_equals_unpadded_reference(model, raw, n_steps):
    """With a padding mask the real tokens get exactly the unpadded reference's logits."""
    batch = one_hot_batch(n_steps, seed=20 + n_steps)
    ref = reference_forward(raw, batch.obs, batch.actions, batch.rtg, batch.timesteps)
    padded = batch.left_pad(9, pad_action=7)
    logits = model(padded)
    n_real = batch.n_tokens(3)
    torch.testing.assert_close(logits[:, -n_real:], ref["logits"], atol=TOL, rtol=0)


def test_action_preferences_are_a_distribution(model):
    probs = model.action_logits(one_hot_batch(3)).softmax(-1)
    assert probs.shape == (3, 3, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 3))


def test_original_checkpoint_is_padded_as_tokens(model):
    assert model.context_padding == "tokens"
    padded = model.pad_context(one_hot_batch(2))
    assert padded.n_steps == 9 and padded.padding_mask is None
