"""The original project's PPO LSTM agent (../shared/checkpoints/dti_memory_ppo_lstm.pt).

Its outputs are compared with ``reference_forward`` (the original TrajectoryLSTM forward
written with functional ops on the raw state-dict tensors, in tests/unit/test_lstm_agent.py).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

import dtlens.env  # noqa: F401  (registers MiniGrid-MemoryS7FixedStart-v0)
from dtlens.data.agents import load_original_lstm
from tests.conftest import ORIGINAL_LSTM, requires_shared
from tests.unit.test_lstm_agent import reference_forward

pytestmark = requires_shared(ORIGINAL_LSTM)


@pytest.fixture(scope="module")
def raw() -> dict:
    return torch.load(ORIGINAL_LSTM, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def agent():
    return load_original_lstm(ORIGINAL_LSTM)


def hand_built_view() -> torch.Tensor:
    """A corridor view built by hand: grey walls left and right, a green key ahead-left,
    a green ball far ahead, unseen cells beyond the walls."""
    wall, empty, unseen = (2, 5, 0), (1, 0, 0), (0, 0, 0)
    image = np.empty((7, 7, 3), dtype=np.uint8)
    image[:] = unseen
    image[2:5, :] = empty  # the corridor, x = 2..4 (the agent sits at [3][6] facing y = 0)
    image[1, :] = wall
    image[5, :] = wall
    image[2, 3] = (5, 1, 0)  # key, green
    image[3, 0] = (6, 1, 0)  # ball, green
    return torch.as_tensor(image)[None]


def test_metadata_and_sizes(agent):
    assert agent.config.image_dim == 128 and agent.config.memory_dim == 128
    assert agent.config.max_value == 9 and agent.n_actions == 7
    assert agent.metadata["env"]["env_id"] == "MiniGrid-MemoryS7FixedStart-v0"
    assert agent.metadata["env"]["max_steps"] == 50
    assert agent.metadata["recurrence"] == 8
    assert agent.metadata["model_config"]["arch"] == "bow_endpool_res"
    assert not agent.training


def test_hand_built_observation_matches_reference(raw, agent):
    image = hand_built_view()
    logits, state = agent.act(image, agent.initial_state(1))
    ref_logp, _, ref_memory = reference_forward(raw["model_state_dict"], image, torch.zeros(1, 256))
    torch.testing.assert_close(logits.exp(), ref_logp.exp(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state, ref_memory, atol=1e-5, rtol=1e-5)


def test_an_episode_matches_reference_step_by_step(raw, agent):
    env = gymnasium.make("MiniGrid-MemoryS7FixedStart-v0", max_steps=50)
    obs, _ = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    state, memory = agent.initial_state(1), torch.zeros(1, 256)
    for _ in range(8):
        image = torch.as_tensor(obs["image"])[None]
        logits, state = agent.act(image, state)
        ref_logp, _, memory = reference_forward(raw["model_state_dict"], image, memory)
        torch.testing.assert_close(logits, ref_logp, atol=1e-5, rtol=1e-5)
        obs, *_ = env.step(int(logits.argmax()))
    assert memory.abs().sum() > 0


def test_greedy_agent_solves_ball_top_key(agent):
    # a pinned behaviour of this checkpoint: greedy, it walks the corridor and turns right
    env = gymnasium.make("MiniGrid-MemoryS7FixedStart-v0", max_steps=50)
    obs, _ = env.reset(seed=0, options={"instruction": "ball", "top": "key"})
    state, actions = agent.initial_state(1), []
    for _ in range(50):
        logits, state = agent.act(torch.as_tensor(obs["image"])[None], state)
        actions.append(int(logits.argmax()))
        obs, reward, terminated, truncated, _ = env.step(actions[-1])
        if terminated or truncated:
            break
    assert actions == [2, 2, 2, 2, 1, 2]
    assert reward == pytest.approx(1 - 0.9 * 6 / 50)
