"""Recurrent PPO: config validation, GAE, segment re-evaluation, and learning a memory probe."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

from dtlens.cli import train_ppo as cli
from dtlens.data.agents import LSTMAgent, LSTMAgentConfig, load_lstm_agent
from dtlens.errors import ConfigError, EnvError, OutputPathError
from dtlens.training.ppo import PPOConfig, chunk_forward, compute_gae, train_ppo
from dtlens.training.probe_envs import CueRecallEnv
from dtlens.training.rollout import (
    EpisodeTracker,
    SegmentCollector,
    make_vector_env,
    play_episodes,
)

TINY = dict(image_dim=16, memory_dim=16, hidden_dim=32, progress=False, num_threads=1)


def recall_env() -> CueRecallEnv:
    return CueRecallEnv(delay=1)


class UniformAgent:
    """A memoryless agent with uniform logits (random play)."""

    n_actions = 7

    def initial_state(self, n_envs: int) -> None:
        return None

    def act(self, obs, state, done_mask=None):
        return torch.zeros(obs.shape[0], self.n_actions), None


class ForgetfulAgent:
    """Wraps an agent and resets its state before every step (no memory)."""

    def __init__(self, agent: LSTMAgent):
        self.agent, self.n_actions = agent, agent.n_actions

    def initial_state(self, n_envs: int) -> torch.Tensor:
        return self.agent.initial_state(n_envs)

    def act(self, obs, state, done_mask=None):
        return self.agent.act(obs, state, torch.ones(obs.shape[0], dtype=torch.bool))


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny agents run fastest on one thread (threads contend badly on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_steps", 10, "n_steps=10 must be a multiple of recurrence=8"),
        ("learning_rate", -1e-3, "learning_rate=-0.001 must be a finite number > 0"),
        ("learning_rate", float("inf"), "learning_rate"),
        ("gamma", 1.5, "gamma=1.5 must be a number in \\[0, 1\\]"),
        ("n_envs", 0, "n_envs=0 must be a positive int"),
        ("n_envs", True, "n_envs=True must be a positive int"),
        ("recurrence", 2.0, "recurrence=2.0 must be a positive int"),
        ("ent_coef", -0.1, "ent_coef=-0.1 must be a finite number >= 0"),
        ("max_steps", 0, "max_steps=0 must be a positive int or None"),
        ("n_minibatches", 1000, "n_minibatches=1000 exceeds the 128"),
        ("total_steps", 100, "total_steps=100 is less than one update's batch"),
        ("anneal_lr", 1, "anneal_lr=1 must be True or False"),
        ("env_id", "", "env_id"),
        ("seed", -1, "seed=-1 must be an int >= 0"),
        ("num_threads", 0, "num_threads=0 must be a positive int or None"),
    ],
)
def test_config_errors_name_field_and_value(field, value, match):
    with pytest.raises(ConfigError, match=match):
        PPOConfig(**{field: value})


def test_config_round_trip_and_derived_sizes():
    cfg = PPOConfig(n_envs=4, n_steps=16, recurrence=4, total_steps=1000, seed=2)
    assert PPOConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert (cfg.batch_size, cfg.n_updates) == (64, 15)
    assert cfg.agent_config() == LSTMAgentConfig(image_dim=128, memory_dim=128, seed=2)
    with pytest.raises(ConfigError, match="lr_schedule"):
        PPOConfig.from_dict({**cfg.to_dict(), "lr_schedule": "cosine"})


# ---------------------------------------------------------------------------------------
# GAE


def test_gae_matches_hand_computation():
    # env 0: r = (0, 1, 0), episode ends after step 1, then a new one; env 1: no ends
    rewards = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0], [0.25, 1.0], [0.0, 1.0]])
    dones = torch.tensor([[False, False], [True, False], [False, False]])
    next_value = torch.tensor([4.0, 3.0])
    g, lam = 0.5, 0.5
    # env 0, backwards: d2 = 0 + .5*4 - 0 = 2, A2 = 2
    #                   d1 = 1 - .25 = .75 (done: no bootstrap), A1 = .75
    #                   d0 = 0 + .5*.25 - .5 = -.375, A0 = -.375 + .25*.75 = -.1875
    # env 1:            d2 = 2 + 1.5 - 1 = 2.5, A2 = 2.5
    #                   d1 = 0 + .5 - 1 = -.5, A1 = -.5 + .25*2.5 = .125
    #                   d0 = -.5, A0 = -.5 + .25*.125 = -.46875
    adv, ret = compute_gae(rewards, values, dones, next_value, g, lam)
    expected = torch.tensor([[-0.1875, -0.46875], [0.75, 0.125], [2.0, 2.5]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.3], [0.2], [0.1]])
    _, ret = compute_gae(
        rewards,
        values,
        torch.zeros(3, 1, dtype=torch.bool),
        torch.tensor([10.0]),
        gamma=0.9,
        gae_lambda=1.0,
    )
    returns = [1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 10, 2 + 0.9 * 3 + 0.81 * 10, 3 + 0.9 * 10]
    torch.testing.assert_close(ret[:, 0], torch.tensor(returns))


# ---------------------------------------------------------------------------------------
# collection and re-evaluation


@pytest.fixture(scope="module")
def segment_and_agent():
    agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=1)).eval()
    collector = SegmentCollector(make_vector_env(lambda: CueRecallEnv(delay=2), 3), seed=0)
    collector.collect(agent, n_steps=5)  # a first segment, so the second starts mid-episode
    return collector.collect(agent, n_steps=8), agent


def test_segment_bookkeeping(segment_and_agent):
    segment, _ = segment_and_agent
    assert segment.obs.shape == (8, 3, 7, 7, 3) and segment.obs.dtype == torch.uint8
    # episodes last delay + 1 = 3 steps: a start follows every done
    torch.testing.assert_close(segment.starts[1:], segment.dones[:-1])
    assert segment.dones.sum(0).tolist() == [3, 3, 3]  # steps 5..12 hold 3 episode ends
    assert not segment.initial_state.eq(0).all()  # the segment began mid-episode
    # rewards only at episode ends
    assert not segment.rewards[~segment.dones].any()


def test_chunk_recomputation_reproduces_collected_logprobs_and_values(segment_and_agent):
    segment, agent = segment_and_agent
    rec = 4
    with torch.no_grad():
        _, _, states_in, _ = agent.unroll(segment.obs, segment.initial_state, segment.starts)
        chunks = torch.tensor([0, 1, 0, 1, 0, 1])
        envs = torch.tensor([0, 0, 1, 1, 2, 2])
        logits, values = chunk_forward(agent, segment, states_in[::rec], chunks, envs, rec)
    steps = chunks[None, :] * rec + torch.arange(rec)[:, None]
    actions = segment.actions[steps, envs[None, :]]
    logprobs = logits.gather(-1, actions[..., None]).squeeze(-1)
    # the same weights give ratio exactly 1: recurrence, resets and chunking are consistent
    torch.testing.assert_close(logprobs, segment.logprobs[steps, envs[None, :]])
    torch.testing.assert_close(values, segment.values[steps, envs[None, :]])


def test_episode_tracker_and_play_episodes_quota():
    tracker = EpisodeTracker(2)
    assert tracker.update(np.array([1.0, 0.0]), np.array([False, False])) == []
    assert tracker.update(np.array([0.5, 2.0]), np.array([True, True])) == [
        (0, 1.5, 2),
        (1, 2.0, 2),
    ]
    stats = play_episodes(UniformAgent(), CueRecallEnv, n_episodes=7, n_envs=3, seed=0)
    assert stats.n_episodes == 7 and stats.lengths.tolist() == [2] * 7  # delay 1
    with pytest.raises(ConfigError, match="n_episodes"):
        play_episodes(UniformAgent(), CueRecallEnv, n_episodes=0)
    with pytest.raises(EnvError, match=r"\[7, 7, 3\]"):
        make_vector_env(lambda: __import__("gymnasium").make("CartPole-v1"), 2)


# ---------------------------------------------------------------------------------------
# learning


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ppo")
    # ~2 s of CPU: 25 updates of 128 steps (greedy return 1.0 on seeds 0-4 when written)
    cfg = PPOConfig(
        total_steps=3200,
        n_envs=32,
        n_steps=4,
        recurrence=2,
        n_minibatches=2,
        learning_rate=1e-3,
        anneal_lr=False,
        seed=0,
        checkpoint_every=10,
        **TINY,
    )
    agent, history = train_ppo(cfg, env=recall_env, checkpoint_dir=out)
    return agent, history, out, cfg


def test_ppo_learns_to_remember_the_cue(trained):
    agent, history, _, _ = trained
    play = dict(n_episodes=400, n_envs=100, seed=1)
    random_play = play_episodes(UniformAgent(), recall_env, **play)
    learned = play_episodes(agent, recall_env, temperature=0, **play)
    forgetful = play_episodes(ForgetfulAgent(agent), recall_env, temperature=0, **play)
    assert abs(random_play.mean_return - 1 / 7) < 0.06  # random play: 1 in 7
    # a memoryless policy cannot beat 1/2 here; the trained agent must
    assert learned.mean_return >= 0.9
    # and it does so through its recurrent state: wiping it each step loses the cue
    assert forgetful.mean_return <= 0.6
    # training returns rose from chance
    assert np.nanmean([s.mean_return for s in history[:3]]) < 0.6
    assert np.nanmean([s.mean_return for s in history[-5:]]) >= 0.9


def test_history_and_checkpoints(trained):
    agent, history, out, cfg = trained
    assert [s.update for s in history] == list(range(1, cfg.n_updates + 1))
    assert history[-1].env_steps == cfg.total_steps
    assert all(s.episodes == cfg.batch_size // 2 for s in history)  # 2-step episodes
    assert sorted(p.name for p in out.iterdir()) == [
        "final",
        "history.json",
        "update_000010",
        "update_000020",
    ]
    rows = json.loads((out / "history.json").read_text())
    assert len(rows) == len(history) and rows[-1]["mean_return"] == history[-1].mean_return
    loaded = load_lstm_agent(out / "final")
    assert loaded.metadata["ppo_config"] == cfg.to_dict()
    assert loaded.metadata["env"] == "recall_env"
    obs = torch.as_tensor(CueRecallEnv().reset(seed=0)[0])[None]
    for a, b in zip(
        agent.act(obs, agent.initial_state(1)),
        loaded.act(obs, loaded.initial_state(1)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # the mid-run checkpoint is a different (earlier) agent
    early = load_lstm_agent(out / "update_000010")
    assert early.metadata["update"] == 10
    assert not torch.equal(early.actor[2].weight, loaded.actor[2].weight)


def test_callback_stops_training_and_agent_is_trained_in_place():
    agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=0))
    before = agent.actor[2].weight.clone()
    cfg = PPOConfig(total_steps=640, n_envs=4, n_steps=4, recurrence=2, n_minibatches=2, **TINY)
    seen, threads = [], torch.get_num_threads()
    cfg = PPOConfig(**{**cfg.to_dict(), "num_threads": threads + 1})
    during = []

    def callback(stats, _agent):
        seen.append(stats.update)
        during.append(torch.get_num_threads())
        return stats.update == 3

    returned, history = train_ppo(cfg, env=CueRecallEnv, agent=agent, callback=callback)
    assert during == [threads + 1] * 3
    assert returned is agent and seen == [1, 2, 3] and len(history) == 3
    assert torch.get_num_threads() == threads  # num_threads was applied, then restored
    assert not torch.equal(before, agent.actor[2].weight)
    assert math.isclose(history[0].learning_rate, cfg.learning_rate)
    assert history[1].learning_rate < history[0].learning_rate  # annealed


def test_train_ppo_rejects_mismatched_agent_and_bad_config():
    agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, n_actions=3))
    cfg = PPOConfig(total_steps=64, n_envs=2, n_steps=4, recurrence=2, n_minibatches=1, **TINY)
    with pytest.raises(ConfigError, match="3 actions but the env has 7"):
        train_ppo(cfg, env=CueRecallEnv, agent=agent)
    with pytest.raises(ConfigError, match="PPOConfig"):
        train_ppo({"total_steps": 64})


_CLI_FLAGS = [
    "--total-steps", "16", "--n-envs", "2", "--n-steps", "8", "--recurrence", "4",
    "--n-minibatches", "1", "--update-epochs", "1", "--image-dim", "8", "--memory-dim", "8",
    "--threads", "1", "--no-progress",
]  # fmt: skip


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    return cli.add_parser(parser.add_subparsers()).parse_args([*argv, *_CLI_FLAGS])


def test_cli_trains_on_memory_env(tmp_path, capsys):
    assert cli.run(_cli_args("--out", str(tmp_path))) == 0
    assert "trained 1 updates (16 steps)" in capsys.readouterr().out
    agent = load_lstm_agent(tmp_path / "final")
    assert agent.metadata["env"] == "MiniGrid-MemoryS7FixedStart-v0"
    assert agent.config.memory_dim == 8


def test_cli_never_replaces_an_earlier_run_silently(tmp_path):
    out = tmp_path / "ppo"
    assert cli.run(_cli_args("--out", str(out), "--checkpoint-every", "1")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["final", "history.json", "update_000001"]
    weights = (out / "final" / "agent.safetensors").read_bytes()
    assert cli.resume_hint(argparse.Namespace(out=out)).startswith(
        f"last agent checkpoint {out / 'update_000001'}; continue from it with --init"
    )
    with pytest.raises(OutputPathError, match=r"already holds a run \(final, update_000001, "):
        cli.run(_cli_args("--out", str(out), "--seed", "1"))
    assert (out / "final" / "agent.safetensors").read_bytes() == weights
    # --overwrite replaces the whole run: the old update_ checkpoint is gone
    assert cli.run(_cli_args("--out", str(out), "--seed", "1", "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["final", "history.json"]
    assert (out / "final" / "agent.safetensors").read_bytes() != weights
    assert cli.resume_hint(argparse.Namespace(out=out)) == "no agent checkpoint was written yet"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputPathError, match="cannot be created"):
        cli.run(_cli_args("--out", str(tmp_path / "file.txt" / "ppo")))
