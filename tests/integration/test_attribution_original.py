"""DLA, logit lens and congruence on the original project's MemoryDT (gated MLP, LN).

The batch is real: the first five steps of the optimal route in each of the four
Memory layouts, at RTG 0.9 and 0, padded to the model's context the way it expects.
"""

from __future__ import annotations

import pytest
import torch

import dtlens
from dtlens.analysis.decomposition import direct_logit_attribution, logit_lens
from dtlens.analysis.weights.congruence import congruence, per_layer_growth
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, make_env, optimal_actions
from dtlens.model import TrajectoryBatch
from tests.conftest import ORIGINAL_DT, requires_shared

pytestmark = requires_shared(ORIGINAL_DT)
N_STEPS = 5  # states S1..S5: the last one is the decision square


@pytest.fixture(scope="module")
def model():
    return dtlens.load(ORIGINAL_DT).eval()


def route_batch(rtg: float) -> TrajectoryBatch:
    """One row per layout: observations along the optimal route, the actions taken."""
    rows = []
    for scenario in SCENARIOS:
        env = make_env(MEMORY_ENV_ID)
        obs, _ = env.reset(
            seed=0, options={"instruction": scenario.instruction, "top": scenario.top}
        )
        images, actions = [torch.as_tensor(obs["image"])], []
        for action in optimal_actions(scenario.instruction, scenario.top)[: N_STEPS - 1]:
            obs, *_ = env.step(int(action))
            images.append(torch.as_tensor(obs["image"]))
            actions.append(int(action))
        env.close()
        rows.append((torch.stack(images), torch.tensor(actions)))
    n = len(rows)
    return TrajectoryBatch(
        obs=torch.stack([r[0] for r in rows]).float(),
        actions=torch.stack([r[1] for r in rows]),
        rtg=torch.full((n, N_STEPS), rtg),
        timesteps=torch.arange(N_STEPS).repeat(n, 1),
    )


@pytest.fixture(scope="module")
def run(model):
    batch = TrajectoryBatch.cat([route_batch(0.9), route_batch(0.0)])
    batch = model.pad_context(batch)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch)
    return batch, logits, cache


@pytest.mark.parametrize("by", ["component", "head"])
def test_dla_sums_to_the_checkpoints_logits(model, run, by):
    _, logits, cache = run
    dla = direct_logit_attribution(cache, model, by=by, split_embed=True)
    torch.testing.assert_close(dla.total(), logits[:, -1], atol=1e-4, rtol=0)
    diff = direct_logit_attribution(cache, model, actions=("left", "right"), by=by)
    torch.testing.assert_close(diff.total(), logits[:, -1, 0] - logits[:, -1, 1], atol=1e-4, rtol=0)


def test_dla_at_every_real_state_token(model, run):
    batch, logits, cache = run
    for timestep in range(-N_STEPS, 0):
        dla = direct_logit_attribution(cache, model, timestep=timestep)
        position = model.state_positions(batch.n_steps)[timestep]
        torch.testing.assert_close(dla.total(), logits[:, position], atol=1e-4, rtol=0)


def test_logit_lens_ends_at_the_logits(model, run):
    _, logits, cache = run
    for scale in ("own", "final"):
        lens = logit_lens(cache, model, scale=scale)
        assert lens.labels == ("0_pre", "1_pre", "final_post")
        torch.testing.assert_close(lens.values[-1], logits[:, -1], atol=1e-5, rtol=0)


def test_congruence_table_of_the_checkpoint(model):
    table = congruence(model)
    assert table.values.shape == (2, 256, 7)
    growth = per_layer_growth(table)
    assert growth.values.shape == (2, 3) and torch.isfinite(growth.values).all()
