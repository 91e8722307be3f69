"""Greedy play records the model's own distribution at every step; the CLI prints it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dtlens
from dtlens.analysis.edits.routine import history_batch, play_greedy
from dtlens.cli import main
from dtlens.env import SCENARIOS, Scenario, make_env
from dtlens.errors import EnvError
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
    with pytest.raises(EnvError, match="max_steps=80 exceeds the model's time embedding"):
        play_greedy(build_model(), SCENARIOS[0], max_steps=80)


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
