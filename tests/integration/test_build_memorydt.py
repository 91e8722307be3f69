"""``dtlens build-memorydt`` end to end on a tiny recipe, and the bar it checks.

The smoke build runs the real command (collect -> curriculum training with checkpoints
-> calibration -> dynamics -> model card: one call of
:func:`dtlens.training.build.build_memorydt`) with the recipe shrunk to a tiny model and
a few hundred episodes; the verdict (:func:`dtlens.training.build.calibration_verdict`)
is checked on hand-made calibration results.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import dtlens
from dtlens.cli import main
from dtlens.env import SCENARIOS
from dtlens.errors import OutputPathError
from dtlens.training import recipe as recipes
from dtlens.training.build import build_memorydt, calibration_verdict, clone_verdict
from dtlens.training.calibration import CalibrationResult
from dtlens.training.config import TrainConfig
from dtlens.training.dynamics import DYNAMICS_FILE, Dynamics
from dtlens.training.model_card import rebuild_command

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=16, n_ctx=26, max_timestep=50, seed=0)


@pytest.fixture
def tiny_recipe(monkeypatch):
    """The shipped recipe with a tiny model, few episodes and steps (same code path)."""
    base = recipes.RECIPES["original"]
    train = base.train.to_dict() | dict(
        model=TINY,
        total_steps=20,
        warmup_steps=2,
        batch_size=16,
        val_fraction=0.3,
        checkpoint_every=5,
        checkpoint_steps=[2],
        eval_every=5,
        online_eval_every=10,
        log_every=5,
        curriculum=[{"until_step": 5, "groups": ["temperature=1"], "window_end_fraction": 1.0}],
    )
    tiny = replace(
        base,
        sampling=("1:120", "5:40"),
        n_envs=8,
        calibration_episodes=8,
        train=TrainConfig.from_dict(train),
    )
    monkeypatch.setitem(recipes.RECIPES, "original", tiny)
    return tiny


def test_smoke_build_writes_everything_and_resumes(tiny_recipe, tmp_path, capsys):
    run_dir, out = tmp_path / "run", tmp_path / "model"
    args = ["build-memorydt", "--run-dir", str(run_dir), "--out", str(out), "--no-progress"]
    assert main(args) == 1  # a tiny model misses the bar, and says so
    printed = capsys.readouterr().out
    assert "calibration requirement FAILED" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "calibration.json", DYNAMICS_FILE, "MODEL_CARD.md"]
    )
    steps = sorted(int(p.name[5:]) for p in (run_dir / "train").glob("step_*"))
    assert steps == [0, 2, 5, 10, 15, 20]
    dynamics = Dynamics.load(out / DYNAMICS_FILE)
    assert dynamics.steps == steps
    assert {"decision_loss", "success@0.9", "swap_logit_diff", "probe/L0"} <= set(dynamics.measures)
    config = json.loads((out / "config.json").read_text())
    calibration = config["metadata"]["calibration"]
    assert calibration["passed"] is False
    assert set(calibration["success_at_0.9_by_layout"]) == {s.name for s in SCENARIOS}
    assert config["metadata"]["recipe"]["train"]["curriculum"][0]["groups"] == ["temperature=1"]
    card = (out / "MODEL_CARD.md").read_text()
    for needle in (
        "## How it learned to remember",
        "**Curriculum**",
        "How the recipe was chosen",
        "steps 0-5: temperature=1",
        rebuild_command(tiny_recipe),
    ):
        assert needle in card, needle
    model = dtlens.load(out)
    assert model.cfg.d_model == 16
    # the training log has the curriculum's data: phase windows come from temperature 1
    metrics = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").open()]
    assert any("eval/decision_loss" in m for m in metrics)

    # a second run reuses the demonstrations and resumes from the last checkpoint
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "using the demonstrations already collected" in printed
    assert "resuming training from the latest checkpoint" in printed


def test_total_steps_scales_the_curriculum(tiny_recipe, tmp_path):
    from dtlens.cli import build_parser
    from dtlens.cli.build_memorydt import recipe_from_args

    args = build_parser().parse_args(
        ["build-memorydt", "--run-dir", str(tmp_path), "--total-steps", "40", "--seed", "3"]
    )
    recipe = recipe_from_args(args)
    assert recipe.train.total_steps == 40
    assert recipe.train.curriculum[0].until_step == 10  # 5 of 20 -> 10 of 40
    assert recipe.train.seed == 3 and recipe.train.model.seed == 3
    assert recipe.train.checkpoint_steps == (4,)  # step 2 of 20 -> 4 of 40


def _calibration(success_at_09_by_layout, success_at_0):
    """A greedy calibration at RTGs 0 and 0.9 with 8 episodes (2 per layout)."""
    success = np.zeros((2, 8), dtype=bool)
    for j, rate in enumerate(success_at_09_by_layout):
        success[1, j::4] = rate
    success[0, : int(success_at_0 * 8)] = True
    return CalibrationResult(
        rtgs=np.array([0.0, 0.9]),
        rewards=success * 0.8,
        success=success,
        lengths=np.full((2, 8), 6),
        layouts=tuple(s.name for s in SCENARIOS) * 2,  # [N] = 8 episodes
        settings={},
    )


PADDED_OK = {
    0.9: {s.name: 1.0 for s in SCENARIOS},
    0.0: {s.name: 0.0 for s in SCENARIOS},
}


@pytest.mark.parametrize(
    ("by_layout", "low", "masked", "passed"),
    [
        ([1, 1, 1, 1], 0.0, PADDED_OK, True),
        ([1, 1, 1, 0], 0.0, PADDED_OK, False),  # 75 % overall but one layout fails
        ([1, 1, 1, 1], 0.25, PADDED_OK, False),  # RTG 0 still succeeds
        ([1, 1, 1, 1], 0.0, {**PADDED_OK, 0.9: {**PADDED_OK[0.9], "key/top-key": 0.0}}, False),
    ],
)
def test_verdict_needs_every_layout_and_both_paddings(by_layout, low, masked, passed):
    verdict = calibration_verdict(recipes.MEMORYDT_RECIPE, _calibration(by_layout, low), masked)
    assert verdict["passed"] is passed
    expected = {s.name: float(v) for s, v in zip(SCENARIOS, by_layout, strict=True)}
    assert verdict["high_by_layout"] == expected


def test_output_paths_are_checked_before_collecting(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    blocked = str(tmp_path / "file.txt" / "sub")
    assert main(["build-memorydt", "--run-dir", blocked, "--out", str(tmp_path / "o")]) == 2
    assert "--run-dir" in capsys.readouterr().err
    assert main(["build-memorydt", "--run-dir", str(tmp_path / "r"), "--out", blocked]) == 2
    assert "--out" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing started


def test_the_library_function_checks_outputs_first_and_logs_through_log(tmp_path):
    """build_memorydt (the library call behind the command) checks both paths before any
    work, and prints nothing itself: its lines go to ``log``."""
    (tmp_path / "file.txt").write_text("x")
    lines: list[str] = []
    recipe = recipes.customise_recipe(recipes.MEMORYDT_RECIPE, tmp_path / "r")
    with pytest.raises(OutputPathError, match="--out"):
        build_memorydt(recipe, tmp_path / "file.txt" / "o", tmp_path / "r", log=lines.append)
    assert lines == [] and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_clone_build_writes_a_clone_with_no_rtg_claims(tiny_recipe, tmp_path, capsys):
    """``--model-type clone``: the same recipe and data, a clone's config, its own bar."""
    from dtlens.cli import build_parser
    from dtlens.cli.build_memorydt import output_paths, recipe_from_args

    parsed = build_parser().parse_args(["build-memorydt", "--model-type", "clone"])
    assert [str(p) for p in output_paths(parsed)] == [
        "dtlens/pretrained/memorydt-clone",
        "runs/memorydt-clone",
    ]
    recipe = recipe_from_args(parsed)
    assert recipe.train.model.model_type == "clone" and recipe.train.model_type == "clone"
    assert recipe.train.model.n_timesteps == tiny_recipe.train.model.n_timesteps
    assert recipe.sampling == tiny_recipe.sampling  # the same demonstrations

    run_dir, out = tmp_path / "run", tmp_path / "clone"
    args = ["build-memorydt", "--model-type", "clone", "--run-dir", str(run_dir)]
    assert main([*args, "--out", str(out), "--no-progress"]) == 1  # tiny: misses its bar
    printed = capsys.readouterr().out
    assert "clone requirement FAILED" in printed and "RTG 0 (" not in printed
    model = dtlens.load(out)
    assert model.cfg.model_type == "clone"
    meta = json.loads((out / "config.json").read_text())["metadata"]
    assert meta["name"] == "memorydt-clone"
    assert set(meta["calibration"]["success_by_layout"]) == {s.name for s in SCENARIOS}
    assert "success_at_0" not in meta["calibration"]
    assert len(CalibrationResult.from_json((out / "calibration.json").read_text()).rtgs) == 1
    card = (out / "MODEL_CARD.md").read_text()
    assert "no RTG calibration" in card and "**NOT met**" in card
    assert "RTG 0 " not in card and "--model-type clone" in card


def test_clone_verdict_is_success_in_every_layout():
    clone = _calibration([1, 1, 1, 1], 0.0)
    one_row = CalibrationResult(
        rtgs=clone.rtgs[1:],
        rewards=clone.rewards[1:],
        success=clone.success[1:],
        lengths=clone.lengths[1:],
        layouts=clone.layouts[:8],
        settings={},
    )
    ok = {s.name: 1.0 for s in SCENARIOS}
    assert clone_verdict(recipes.MEMORYDT_RECIPE, one_row, ok)["passed"] is True
    missed = clone_verdict(recipes.MEMORYDT_RECIPE, one_row, {**ok, "key/top-key": 0.0})
    assert missed["passed"] is False and missed["masked"]["passed"] is False
