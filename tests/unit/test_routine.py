"""Greedy play records the model's own distribution at every step; the CLI prints it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dtlens
from dtlens.analysis.edits.routine import GreedyRun, history_batch, play_greedy
from dtlens.cli import main
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, Scenario, make_env
from dtlens.errors import ConfigError
from dtlens.training.evaluate import rollout
from tests.conftest import build_model


def test_history_batch_takes_the_last_window():
    rng = np.random.default_rng(0)
    images = np.stack([rng.integers(0, high, (5, 7, 7)) for high in (11, 6, 3)], axis=-1).astype(
        np.uint8
    )
    batch = history_batch(images, [0, 1, 2, 3], [0.5, 0.5, 0.4, 0.4, 0.3], 3)
    assert batch.timesteps.tolist() == [[2, 3, 4]]
    assert batch.actions.tolist() == [[2, 3]]
    torch.testing.assert_close(batch.rtg, torch.tensor([[0.4, 0.4, 0.3]]))
    assert batch.obs.shape == (1, 3, 7, 7, 20)
    # the object channel of cell (0, 0) at the first kept step is images[2, 0, 0, 0]
    assert batch.obs[0, 0, 0, 0, :11].argmax() == images[2, 0, 0, 0]


def test_greedy_run_replays_to_the_same_distributions():
    model = build_model()
    run = play_greedy(model, Scenario("key", "ball"), rtg=0.9, max_steps=12)
    assert len(run.actions) == run.probs.shape[0] == len(run.images) - 1
    # replay the env with the recorded actions: same observations
    env = make_env("MiniGrid-MemoryS7FixedStart-v0", max_steps=12, one_hot=False)
    obs, _ = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    assert np.array_equal(obs["image"], run.images[0])
    for step, action in enumerate(run.actions):
        obs, *_ = env.step(action)
        assert np.array_equal(obs["image"], run.images[step + 1])
    # each recorded distribution is the model's at that step, and the action is its argmax
    for step in range(len(run.actions)):
        batch = history_batch(
            run.images[: step + 1], run.actions[:step], [0.9] * (step + 1), window=4
        )
        probs = model.action_logits(batch.left_pad(4, pad_action=7))[0, -1].softmax(-1)
        torch.testing.assert_close(run.probs[step], probs.detach())
        assert run.actions[step] == int(probs.argmax())


def test_play_refuses_steps_beyond_the_time_embedding():
    model = build_model()  # max_timestep=50: timesteps 0..50, so at most 51 steps
    with pytest.raises(ConfigError, match="max_steps=80 needs timesteps up to 79, beyond"):
        play_greedy(model, SCENARIOS[0], max_steps=80)
    with pytest.raises(ConfigError, match="max_steps=52 needs timesteps up to 51"):
        play_greedy(model, SCENARIOS[0], max_steps=52)
    run = play_greedy(model, SCENARIOS[0], max_steps=51)  # the last step is at timestep 50
    assert len(run.actions) <= 51


def test_greedy_run_from_rollout_reads_one_recorded_episode():
    model = build_model()
    result = rollout(model, MEMORY_ENV_ID, initial_rtg=[0.9, 0.0], seeds=[0, 1],
                     layouts=["key/top-key", "ball/top-key"], max_steps=6, record=True)  # fmt: skip
    run = GreedyRun.from_rollout(result, 1, rtg=0.0)
    assert run.scenario == Scenario("ball", "key") and run.rtg == 0.0
    assert run.actions == list(result.actions[1])
    assert torch.equal(run.probs, result.probs[1]) and np.array_equal(run.images, result.images[1])
    assert (run.reward, run.terminated) == (float(result.rewards[1]), bool(result.terminated[1]))
    assert GreedyRun.from_rollout(result, 0).rtg == pytest.approx(0.9)  # the float32 as played
    unrecorded = rollout(model, MEMORY_ENV_ID, initial_rtg=[0.9], seeds=[0],
                         layouts=["key/top-key"], max_steps=3)  # fmt: skip
    with pytest.raises(ConfigError, match="record=True"):
        GreedyRun.from_rollout(unrecorded)


def test_cli_preferences_prints_every_layout(tmp_path, capsys):
    path = dtlens.save(build_model(), tmp_path / "tiny")
    assert main(["preferences", "--model", str(path), "--rtg", "0.9", "--max-steps", "5"]) == 0
    out = capsys.readouterr().out
    for scenario in SCENARIOS:
        assert f"{scenario.name}  RTG=0.90" in out
    assert "forward" in out and "step  action" in out


def test_cli_reports_bad_model_path(tmp_path, capsys):
    assert main(["preferences", "--model", str(tmp_path / "missing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
