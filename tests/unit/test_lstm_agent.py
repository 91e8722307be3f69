"""The LSTM demonstrator agent, its loader, and action sampling.

The forward pass is checked against ``reference_forward`` below: the original
TrajectoryLSTM computation written out with functional torch ops on the ORIGINAL
state-dict keys (``model.image_conv.1.weight`` ...), never calling dtlens. The
integration test reuses it on the real checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dtlens.data.agents import (
    Agent,
    LSTMAgent,
    LSTMAgentConfig,
    action_probabilities,
    convert_original_lstm,
    load_lstm_agent,
    load_original_lstm,
    sample_actions,
    save_lstm_agent,
)
from dtlens.errors import BatchError, CheckpointError, ConfigError, ObservationError

# ---------------------------------------------------------------------------------------
# independent reference


def reference_forward(
    sd: dict[str, torch.Tensor], image: torch.Tensor, memory: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The original TrajectoryLSTM forward (bow_endpool_res, use_memory, eval-mode BN).

    Returns ``(log_probs, value, new_memory)``; memory is ``cat(h, c)``.
    """
    table = sd["model.image_conv.0.embedding.weight"]
    max_value = table.shape[0] // 3
    # obs.image [B, x, y, 3] -> transpose(1, 3) -> [B, 3, y, x] -> transpose(2, 3) -> [B, 3, x, y]
    x = torch.transpose(torch.transpose(image.long(), 1, 3), 2, 3)
    offsets = torch.tensor([0, max_value, 2 * max_value])
    x = F.embedding(x + offsets[None, :, None, None], table)  # [B, 3, x, y, D]
    x = x.sum(1).permute(0, 3, 1, 2)  # [B, D, x, y]
    for conv, bn in ((1, 2), (4, 5)):
        x = F.conv2d(
            x, sd[f"model.image_conv.{conv}.weight"], sd[f"model.image_conv.{conv}.bias"], padding=1
        )
        x = F.batch_norm(
            x,
            sd[f"model.image_conv.{bn}.running_mean"],
            sd[f"model.image_conv.{bn}.running_var"],
            sd[f"model.image_conv.{bn}.weight"],
            sd[f"model.image_conv.{bn}.bias"],
            training=False,
            eps=1e-5,
        )
        x = torch.relu(x)
    x = torch.relu(F.max_pool2d(x, kernel_size=(7, 7), stride=2)).reshape(x.shape[0], -1)
    m = memory.shape[1] // 2
    h, c = memory[:, :m], memory[:, m:]
    gates = (
        x @ sd["model.memory_rnn.weight_ih"].T
        + sd["model.memory_rnn.bias_ih"]
        + h @ sd["model.memory_rnn.weight_hh"].T
        + sd["model.memory_rnn.bias_hh"]
    )
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)

    def head(name: str) -> torch.Tensor:
        hidden = torch.tanh(h @ sd[f"model.{name}.0.weight"].T + sd[f"model.{name}.0.bias"])
        return hidden @ sd[f"model.{name}.2.weight"].T + sd[f"model.{name}.2.bias"]

    return torch.log_softmax(head("actor"), dim=1), head("critic")[:, 0], torch.cat([h, c], 1)


def random_original_checkpoint(d: int = 8, m: int = 6, hidden: int = 5, seed: int = 0) -> dict:
    """A random original-format PPO LSTM checkpoint dict (tiny sizes, non-trivial BN stats)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g)

    sd = {"model.image_conv.0.embedding.weight": r(27, d, scale=1.0)}
    for conv, bn in ((1, 2), (4, 5)):
        sd[f"model.image_conv.{conv}.weight"] = r(d, d, 3, 3, scale=0.2)
        sd[f"model.image_conv.{conv}.bias"] = r(d)
        sd[f"model.image_conv.{bn}.weight"] = 1 + r(d)
        sd[f"model.image_conv.{bn}.bias"] = r(d)
        sd[f"model.image_conv.{bn}.running_mean"] = r(d)
        sd[f"model.image_conv.{bn}.running_var"] = 0.5 + torch.rand(d, generator=g)
        sd[f"model.image_conv.{bn}.num_batches_tracked"] = torch.tensor(7)
    sd["model.memory_rnn.weight_ih"] = r(4 * m, d)
    sd["model.memory_rnn.weight_hh"] = r(4 * m, m)
    sd["model.memory_rnn.bias_ih"] = r(4 * m)
    sd["model.memory_rnn.bias_hh"] = r(4 * m)
    for name, out in (("actor", 7), ("critic", 1)):
        sd[f"model.{name}.0.weight"] = r(hidden, m)
        sd[f"model.{name}.0.bias"] = r(hidden)
        sd[f"model.{name}.2.weight"] = r(out, hidden)
        sd[f"model.{name}.2.bias"] = r(out)
    env = {"env_id": "MiniGrid-MemoryS7FixedStart-v0", "max_steps": 50, "view_size": 7}
    model = {
        "image_dim": d,
        "memory_dim": m,
        "arch": "bow_endpool_res",
        "use_memory": True,
        "use_instr": False,
        "aux_info": False,
        "recurrence": 4,
    }
    return {
        "model_state_dict": sd,
        "model_config": json.dumps({**model, "environment_config": env}),
        "environment_config": json.dumps(env),
        "online_config": json.dumps({"num_envs": 2}),
    }


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    """Valid raw MiniGrid images: objects < 9, colours < 6, states < 3."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, high, (n, 7, 7), generator=g) for high in (9, 6, 3)], -1)


@pytest.fixture(scope="module")
def raw() -> dict:
    return random_original_checkpoint()


@pytest.fixture(scope="module")
def agent(raw: dict) -> LSTMAgent:
    state_dict, cfg, meta = convert_original_lstm(raw)
    agent = LSTMAgent(cfg, metadata=meta).eval()
    agent.load_state_dict(state_dict)
    return agent


# ---------------------------------------------------------------------------------------
# forward = reference


def test_forward_matches_functional_reference_over_several_steps(raw, agent):
    sd = raw["model_state_dict"]
    images = [random_images(5, seed=s) for s in range(3)]
    memory = torch.zeros(5, 12)
    state = agent.initial_state(5)
    for image in images:
        ref_logp, ref_value, memory = reference_forward(sd, image, memory)
        logp, value, state = agent(image, state)
        torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(value, ref_value, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state, memory, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(state, torch.zeros_like(state))  # the memory path did something


def test_image_orientation_matters(raw, agent):
    # transposing x and y changes the output: the reference's [x, y] layout is really tested
    image = random_images(2, seed=4)
    state = agent.initial_state(2)
    logp, _, _ = agent(image, state)
    flipped, _, _ = agent(image.transpose(1, 2), state)
    assert not torch.allclose(logp, flipped, atol=1e-4)
    ref, _, _ = reference_forward(raw["model_state_dict"], image.transpose(1, 2), state)
    torch.testing.assert_close(flipped, ref, atol=1e-5, rtol=1e-5)


def test_act_accepts_uint8_numpy_and_returns_normalised_logits(agent):
    image = random_images(3, seed=1)
    logits_t, state_t = agent.act(image, agent.initial_state(3))
    logits_np, state_np = agent.act(image.numpy().astype(np.uint8), agent.initial_state(3))
    torch.testing.assert_close(logits_t, logits_np)
    torch.testing.assert_close(state_t, state_np)
    torch.testing.assert_close(logits_t.exp().sum(-1), torch.ones(3))
    assert not logits_t.requires_grad
    assert isinstance(agent, Agent)


# ---------------------------------------------------------------------------------------
# recurrent state reset


def test_done_mask_resets_state_to_initial(agent):
    first, second = random_images(4, seed=2), random_images(4, seed=3)
    _, state = agent.act(first, agent.initial_state(4))
    done = torch.tensor([True, False, True, False])
    reset = agent.reset_state(state, done)
    torch.testing.assert_close(reset[done], agent.initial_state(2))
    torch.testing.assert_close(reset[~done], state[~done])
    # after a reset the distribution equals a fresh agent's; without one it does not
    logits, _ = agent.act(second, state, done)
    fresh, _ = agent.act(second, agent.initial_state(4))
    torch.testing.assert_close(logits[done], fresh[done])
    assert not torch.allclose(logits[~done], fresh[~done], atol=1e-4)


def test_unroll_matches_step_by_step_act_with_episode_starts(agent):
    obs = torch.stack([random_images(3, seed=10 + t) for t in range(5)])  # [T, N, 7, 7, 3]
    starts = torch.zeros(5, 3, dtype=torch.bool)
    starts[0] = True
    starts[2, 1] = starts[3, 0] = True
    state0 = torch.randn(3, agent.state_dim, generator=torch.Generator().manual_seed(0))
    logits, _, states_in, last = agent.unroll(obs, state0, starts)
    state = state0
    for t in range(5):
        torch.testing.assert_close(states_in[t], state)
        step_logits, state = agent.act(obs[t], state, starts[t])
        torch.testing.assert_close(logits[t], step_logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last, state, atol=1e-6, rtol=1e-5)
    # env 1 restarts at t=2: from there on it equals a fresh unroll of its later steps
    fresh, _, _, _ = agent.unroll(obs[2:, 1:2], agent.initial_state(1))
    torch.testing.assert_close(logits[2:, 1:2], fresh, atol=1e-6, rtol=1e-5)


def test_unroll_detach_every_cuts_gradient_through_state(agent):
    obs = torch.stack([random_images(1, seed=20 + t) for t in range(4)])
    state0 = torch.zeros(1, agent.state_dim, requires_grad=True)
    logits, _, _, _ = agent.unroll(obs, state0)
    (full,) = torch.autograd.grad(logits[3].sum(), state0)
    assert full.abs().sum() > 0  # without truncation step 3 depends on the initial state
    logits, _, _, _ = agent.unroll(obs, state0, detach_every=2)
    (kept,) = torch.autograd.grad(logits[1].sum(), state0, retain_graph=True)
    (cut,) = torch.autograd.grad(logits[2].sum(), state0, materialize_grads=True)
    assert kept.abs().sum() > 0
    assert torch.count_nonzero(cut) == 0


# ---------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize(
    ("obs", "match"),
    [
        (torch.zeros(2, 7, 7, 20), r"\[n_envs, 7, 7, 3\]"),
        (torch.zeros(2, 7, 7, 3), "integer MiniGrid indices"),
        (torch.full((1, 7, 7, 3), 9), r"\[0, 9\)"),
        (torch.full((1, 7, 7, 3), -1), r"\[0, 9\)"),
        ([[1, 2, 3]], "tensor or numpy array"),
    ],
)
def test_bad_observations_raise(agent, obs, match):
    with pytest.raises(ObservationError, match=match):
        agent.act(
            obs, agent.initial_state(1 if not isinstance(obs, torch.Tensor) else obs.shape[0])
        )


def test_bad_state_and_done_mask_raise(agent):
    image = random_images(2)
    with pytest.raises(BatchError, match=r"\[2, 12\]"):
        agent.act(image, torch.zeros(2, 5))
    with pytest.raises(BatchError, match="done_mask"):
        agent.act(image, agent.initial_state(2), torch.tensor([1, 0]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_dim", 0),
        ("memory_dim", -2),
        ("n_actions", 1.5),
        ("hidden_dim", True),
        ("view_size", 9),
        ("seed", "x"),
    ],
)
def test_config_validation_names_field_and_value(field, value):
    with pytest.raises(ConfigError, match=rf"{field}.*{value!r}".replace("(", r"\(")):
        LSTMAgentConfig(**{field: value})


def test_config_round_trip_and_unknown_key():
    cfg = LSTMAgentConfig(image_dim=8, memory_dim=4, seed=3)
    assert LSTMAgentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="colour_dim"):
        LSTMAgentConfig.from_dict({**cfg.to_dict(), "colour_dim": 3})


def test_seeded_construction_is_reproducible_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4, seed=5))
    b = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4, seed=5))
    assert torch.equal(torch.random.get_rng_state(), before)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    # BabyAI's init: Linear rows have unit norm and zero bias
    row_norms = a.actor[0].weight.norm(dim=1)
    torch.testing.assert_close(row_norms, torch.ones_like(row_norms))
    assert torch.count_nonzero(a.actor[2].bias) == 0


# ---------------------------------------------------------------------------------------
# checkpoints


def test_save_load_round_trip(agent, tmp_path):
    path = save_lstm_agent(agent, tmp_path / "agent", {"note": "round trip"})
    assert sorted(p.name for p in path.iterdir()) == ["agent.safetensors", "config.json"]
    loaded = load_lstm_agent(path)
    assert loaded.config == agent.config
    assert loaded.metadata["note"] == "round trip"
    assert loaded.metadata["recurrence"] == 4  # the original's metadata survives
    image = random_images(3, seed=7)
    for a, b in zip(
        agent.act(image, agent.initial_state(3)),
        loaded.act(image, loaded.initial_state(3)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_load_lstm_agent_errors(agent, tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        load_lstm_agent(tmp_path)
    path = save_lstm_agent(agent, tmp_path / "a")
    (path / "agent.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"agent\.safetensors is not the file config\.json"):
        load_lstm_agent(path)  # the SHA-256 recorded at saving no longer matches
    config = json.loads((path / "config.json").read_text())
    del config["weights_sha256"]  # as written before dtlens recorded hashes
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_lstm_agent(path)
    (path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="dtlens-lstm-agent"):
        load_lstm_agent(path)
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_lstm_agent(agent, tmp_path / "b", {"bad": object()})


# ---------------------------------------------------------------------------------------
# the original-checkpoint converter


def _mutated(raw: dict, **changes) -> dict:
    out = {**raw, "model_state_dict": dict(raw["model_state_dict"])}
    model = json.loads(raw["model_config"])
    for key, value in changes.items():
        if key == "drop":
            del out["model_state_dict"][value]
        elif key == "add":
            out["model_state_dict"][value] = torch.zeros(1)
        elif key == "reshape":
            out["model_state_dict"][value] = torch.zeros(3, 3)
        else:
            model[key] = value
    out["model_config"] = json.dumps(model)
    return out


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"drop": "model.critic.2.bias"}, "missing 'model.critic.2.bias'"),
        ({"drop": "model.memory_rnn.weight_hh"}, "missing 'model.memory_rnn.weight_hh'"),
        ({"add": "model.FiLM_0.weight"}, "unexpected key 'model.FiLM_0.weight'"),
        ({"reshape": "model.actor.0.bias"}, r"'actor.0.bias' has shape \(3, 3\)"),
        ({"arch": "pixels_endpool_res"}, "arch='pixels_endpool_res'"),
        ({"use_memory": False}, "use_memory=False"),
        ({"use_instr": True}, "use_instr=True"),
        ({"aux_info": ["seen_state"]}, "aux_info"),
        ({"image_dim": 64}, "image_dim=64 disagrees"),
    ],
)
def test_converter_rejects_bad_checkpoints(raw, changes, match):
    with pytest.raises(CheckpointError, match=match):
        convert_original_lstm(_mutated(raw, **changes))


def test_converter_requires_model_config(raw):
    with pytest.raises(CheckpointError, match="model_config"):
        convert_original_lstm({"model_state_dict": raw["model_state_dict"]})


class _NotATensor:
    """Pickling this needs code, which weights_only loading refuses."""


def test_load_original_refuses_pickled_code_and_junk(raw, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({**raw, "extra": _NotATensor()}, evil)
    with pytest.raises(CheckpointError, match="pickled code"):
        load_original_lstm(evil)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00junk")
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_original_lstm(junk)
    with pytest.raises(CheckpointError, match="no original PPO checkpoint"):
        load_original_lstm(tmp_path / "absent.pt")


def test_load_original_from_file_matches_reference(raw, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(raw, path)
    agent = load_original_lstm(Path(path))
    assert agent.metadata["env"]["env_id"] == "MiniGrid-MemoryS7FixedStart-v0"
    assert agent.metadata["path"] == str(path)
    assert not agent.training
    image = random_images(2, seed=9)
    logp, _ = agent.act(image, agent.initial_state(2))
    ref, _, _ = reference_forward(raw["model_state_dict"], image, torch.zeros(2, 12))
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# action sampling


def test_temperature_probabilities_match_hand_computed_softmax():
    logits = torch.tensor([[0.0, math.log(2.0), math.log(4.0)]])
    torch.testing.assert_close(action_probabilities(logits, 1.0), torch.tensor([[1, 2, 4]]) / 7.0)
    # T = 2: softmax(logits / 2) = (1, sqrt 2, 2) / (3 + sqrt 2)
    expected = torch.tensor([[1.0, math.sqrt(2.0), 2.0]]) / (3 + math.sqrt(2.0))
    torch.testing.assert_close(action_probabilities(logits, 2.0), expected)
    # top-2 at T = 1: (0, 2, 4) / 6
    torch.testing.assert_close(
        action_probabilities(logits, 1.0, top_k=2), torch.tensor([[0.0, 2.0, 4.0]]) / 6.0
    )


def test_greedy_takes_argmax_first_on_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0], [5.0, 0.0, -1.0]])
    assert sample_actions(logits, temperature=0).tolist() == [1, 0]
    assert action_probabilities(logits, 0.0).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).repeat(20_000, 1)
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(sample_actions(logits, 1.0, g), minlength=3).float() / 20_000
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.015, rtol=0)
    top1 = sample_actions(logits[:100], 1.0, g, top_k=1)
    assert top1.eq(2).all()
    # same generator seed, same draws
    draws = [sample_actions(logits[:50], 5.0, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*draws)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": -0.5}, ConfigError, "temperature"),
        ({"temperature": float("nan")}, ConfigError, "temperature"),
        ({"temperature": True}, ConfigError, "temperature"),
        ({"top_k": 0}, ConfigError, "top_k"),
        ({"top_k": 8}, ConfigError, "n_actions=7"),
        ({"top_k": 2.0}, ConfigError, "top_k"),
    ],
)
def test_bad_sampling_options_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample_actions(torch.zeros(1, 7), **kwargs)


def test_bad_logits_raise():
    with pytest.raises(BatchError, match=r"\[n_envs, n_actions\]"):
        sample_actions(torch.zeros(7))
    with pytest.raises(BatchError, match="int64"):
        sample_actions(torch.zeros(1, 7, dtype=torch.long))
