"""The build's MODEL_CARD.md renderers name the build's own run directory."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dtlens.env import SCENARIOS
from dtlens.training.calibration import CalibrationResult
from dtlens.training.dynamics import Dynamics
from dtlens.training.model_card import render_clone_card, render_model_card
from dtlens.training.recipe import MEMORYDT_RECIPE, customise_recipe
from dtlens.training.trainer import TrainHistory

GROUP = {
    "n_episodes": 10,
    "success_fraction": 0.5,
    "failure_fraction": 0.25,
    "truncated_fraction": 0.25,
    "length": {"mean": 12.0},
    "mean_return": 0.4,
}


def card_inputs() -> dict:
    """Hand-made inputs for both renderers (a stub trainer: the card reads only its
    step and its model's parameter count)."""
    by_layout = {s.name: 1.0 for s in SCENARIOS}
    success = np.array([[False] * 4, [True] * 4])
    return {
        "data_summary": {**GROUP, "groups": {"temperature=1": GROUP}},
        "trainer": SimpleNamespace(model=torch.nn.Linear(3, 2), step=20),  # 8 parameters
        "history": TrainHistory(
            train=[{"step": 19, "train/loss": 0.5}], val=[{"step": 20, "val/loss": 0.6}]
        ),
        "calibration": CalibrationResult(
            rtgs=np.array([0.0, 0.9]),
            rewards=success * 0.89,
            success=success,
            lengths=np.full((2, 4), 6),
            layouts=tuple(s.name for s in SCENARIOS),
        ),
        "verdict": {
            "passed": True,
            "high": 1.0,
            "low": 0.0,
            "high_by_layout": by_layout,
            "success": 1.0,
            "by_layout": by_layout,
            "masked": {
                "success_at_0.9": by_layout,
                "success_at_0": dict.fromkeys(by_layout, 0.0),
                "success": by_layout,
            },
        },
        "timings": {"collect_s": 60.0, "train_s": 120.0},
        "dynamics": Dynamics([0, 10, 20], {"success@0.9": [0.0, 0.5, 1.0]}),
    }


def render(kind: str, run_dir) -> str:
    x = card_inputs()
    if kind == "clone":
        recipe = customise_recipe(MEMORYDT_RECIPE, "runs/memorydt-clone", model_type="clone")
        return render_clone_card(
            recipe, x["data_summary"], x["trainer"], x["history"], x["verdict"], x["timings"],
            x["dynamics"], run_dir=run_dir,
        )  # fmt: skip
    return render_model_card(
        MEMORYDT_RECIPE, x["data_summary"], x["trainer"], x["history"], x["calibration"],
        x["verdict"], x["timings"], x["dynamics"], threads=2, run_dir=run_dir,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["dt", "clone"])
def test_a_card_names_the_run_directory_it_was_built_in(kind, tmp_path):
    run_dir = tmp_path / "my runs" / "build-7"
    card = render(kind, run_dir)
    assert f"`dtlens dynamics --run-dir\n{run_dir.as_posix()}/train`)" in card
    assert "runs/memorydt/" not in card and "runs/memorydt/train" not in card
    flat = " ".join(card.split())
    if kind == "dt":
        assert f"Intermediate files go to `{run_dir.as_posix()}/` (git-ignored)" in flat
        assert "Greedy success at RTG 0.9 stays >= 95 % from step 20" in flat
    else:  # a clone reads no RTG; its rebuild command still names the shipped run dir
        assert "Greedy success (no RTG) stays >= 95 % from step 20" in flat
        assert "RTG 0.9 stays" not in flat
        assert "--run-dir runs/memorydt-clone\n" in card


def test_the_default_run_directories_give_the_shipped_cards_wording():
    dt, clone = render("dt", "runs/memorydt"), render("clone", "runs/memorydt-clone")
    assert "Intermediate files go to `runs/memorydt/` (git-ignored)" in dt
    assert "--run-dir\nruns/memorydt/train`). Greedy success at RTG 0.9 stays" in dt
    assert "--run-dir\nruns/memorydt-clone/train`). Greedy success (no RTG) stays" in clone


def test_the_clone_card_keeps_the_curriculum_phases_without_the_dts_remarks():
    dt, clone = render("dt", "runs/memorydt"), render("clone", "runs/memorydt-clone")
    phases = "**Curriculum** (`TrainConfig.curriculum`): steps 0-"
    assert phases in dt and phases in clone
    assert "With weight decay 0.3" in dt and "With weight decay 0.3" not in clone
    assert (
        ". The first phase shows the memory decision in every window; the clone uses the "
        "MemoryDT's curriculum unchanged (whether a clone needs it was not measured)."
    ) in clone.replace("\n", " ")
