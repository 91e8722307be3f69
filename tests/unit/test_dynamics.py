"""Training dynamics over checkpoints: the record, the story, the figure, the CLI, the report.

Two tiny checkpoints (the initial weights and a few steps later) are measured, and each
value is checked against the same measure taken directly on the loaded checkpoint and
against the losses the run recorded.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import dtlens
from dtlens.cli import main
from dtlens.errors import CheckpointError
from dtlens.plotting.dynamics import plot_dynamics
from dtlens.report.config import ReportConfig
from dtlens.report.sections import dynamics as dynamics_section
from dtlens.training.config import TrainConfig
from dtlens.training.dynamics import DYNAMICS_FILE, Dynamics, checkpoint_steps, training_dynamics
from dtlens.training.pipeline import make_samplers, train_on_demonstrations
from dtlens.training.progress import DecisionData, progress_measures
from tests.conftest import planner_demos

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=16, n_ctx=26, max_timestep=50, seed=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny training run with checkpoints at steps 0 and 4 (and its demonstrations)."""
    root = tmp_path_factory.mktemp("dyn")
    demos = planner_demos("1:120")
    path = demos.save(root / "demos.npz")
    config = TrainConfig(
        model=TINY,
        batch_size=8,
        total_steps=4,
        warmup_steps=1,
        val_fraction=0.5,
        eval_every=2,
        log_every=2,
        checkpoint_every=4,
        run_dir=str(root / "train"),
        device="cpu",
    )
    train_on_demonstrations(config, demos, show_progress=False, data_file=path)
    _, val = make_samplers(demos, config)
    return root, demos, config, DecisionData.from_demonstrations(demos, val)


def test_checkpoint_steps_lists_the_run(run):
    root, *_ = run
    assert [k for k, _ in checkpoint_steps(root / "train")] == [0, 4]
    with pytest.raises(CheckpointError, match="no step_k checkpoints"):
        checkpoint_steps(root)


def test_every_measure_equals_the_measure_on_the_loaded_checkpoint(run):
    root, _, _, data = run
    dyn = training_dynamics(root / "train", data, show_progress=False)
    assert dyn.steps == [0, 4]
    for i, step in enumerate(dyn.steps):
        direct = progress_measures(dtlens.load(root / "train" / f"step_{step}"), data)
        for name, value in direct.items():
            assert dyn.measures[name][i] == pytest.approx(value), (name, step)
    assert any(k.startswith("probe/") for k in dyn.measures)
    # the two checkpoints differ (training moved the weights)
    assert dyn.measures["decision_loss"][0] != dyn.measures["decision_loss"][1]


def test_losses_come_from_the_run_history(run):
    root, *_ = run
    dyn = training_dynamics(root / "train", None, probe=False, show_progress=False)
    state = json.loads((root / "train" / "step_4" / "trainer_state.json").read_text())
    train = {r["step"]: r["train/loss"] for r in state["history"]["train"]}
    val = {r["step"]: r["val/loss"] for r in state["history"]["val"]}
    assert dyn.measures["train_loss"] == [None, train[4]]
    assert dyn.measures["val_loss"] == [None, val[4]]
    assert "decision_loss" not in dyn.measures  # no data given


def test_first_step_and_story_by_hand():
    dyn = Dynamics(
        [0, 100, 200, 300],
        {
            "success@0.9": [0.5, 1.0, 0.5, 1.0],
            "decision_loss": [0.69, 0.4, 0.2, 0.1],
            "swap_logit_diff": [0.0, 0.5, 3.0, 9.0],
            "attention/L0H0": [0.1, 0.1, 0.2, 0.2],
            "attention/L0H1": [0.1, 0.5, 0.6, 0.9],
            "probe/L0": [0.5, 0.5, 0.6, 0.6],
            "probe/L1": [0.5, 0.6, 0.95, 1.0],
        },
    )
    assert dyn.first_step("success@0.9", above=0.949) == 300  # must stay, not just touch
    story = dyn.story()
    assert story["plateau_broke_at"] == 300
    assert story["moved_at"] == {
        "decision_loss": 100,
        "success@0.9": 300,
        "swap_logit_diff": 200,
        "probe/last": 200,
        "attention/max": 100,
    }
    assert story["first_to_move"] == ["attention/max", "decision_loss"]


def test_a_measure_past_its_threshold_throughout_does_not_count_as_moving():
    # a random model's probe can already decode the instruction: no learning signal
    dyn = Dynamics(
        [0, 100, 200],
        {"probe/L1": [0.98, 0.95, 1.0], "decision_loss": [0.7, 0.69, 0.1]},
    )
    story = dyn.story()
    assert story["past_at_start"] == ["probe/last"]
    assert story["moved_at"]["probe/last"] is None
    assert story["first_to_move"] == ["decision_loss"]


def test_a_measure_that_starts_past_its_threshold_moves_when_it_returns_for_good():
    # the shipped run's shape: readable at initialisation, washed out on the plateau,
    # readable again one checkpoint before the behaviour changes
    dyn = Dynamics(
        [0, 25, 50, 75],
        {"probe/L1": [0.98, 0.87, 0.99, 1.0], "success@0.9": [0.0, 0.5, 0.5, 1.0]},
    )
    story = dyn.story()
    assert story["moved_at"] == {"probe/last": 50, "success@0.9": 75}
    assert story["past_at_start"] == [] and story["first_to_move"] == ["probe/last"]


def test_story_of_a_run_that_never_leaves_the_plateau():
    dyn = Dynamics([0, 1], {"success@0.9": [0.5, 0.5], "decision_loss": [0.69, 0.69]})
    story = dyn.story()
    assert story["plateau_broke_at"] is None and story["first_to_move"] == []
    assert story["moved_at"] == {"decision_loss": None, "success@0.9": None}


def test_json_round_trip_and_errors(tmp_path):
    dyn = Dynamics([0, 5], {"val_loss": [None, 1.5], "x": [float("nan"), 2.0]}, {"run_dir": "r"})
    path = dyn.save(tmp_path / DYNAMICS_FILE)
    again = Dynamics.load(path)
    assert again.steps == [0, 5] and again.measures == {"val_loss": [None, 1.5], "x": [None, 2.0]}
    assert not list(tmp_path.glob("*.tmp"))
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read dynamics"):
        Dynamics.load(path)
    path.write_text('{"steps": [0], "measures": {"a": [1, 2]}}')
    with pytest.raises(CheckpointError, match="2 values for 1 steps"):
        Dynamics.load(path)


def test_plot_has_a_trace_per_measure_and_gaps_for_missing_values():
    dyn = Dynamics(
        [0, 10, 20],
        {
            "train_loss": [None, 1.0, 0.5],
            "decision_loss": [0.7, 0.69, 0.1],
            "success@0.9": [0.5, 0.5, 1.0],
            "attention/L0H0": [0.1, 0.2, 0.5],
            "probe/L0": [0.5, 0.6, 1.0],
            "empty": [None, None, None],
        },
    )
    fig = plot_dynamics(dyn)
    names = [t.name for t in fig.data]
    measures = ["train_loss", "decision_loss", "success@0.9", "attention/L0H0", "probe/L0"]
    assert names[:5] == measures and "empty" not in names
    assert fig.data[0].y[0] is None and list(fig.data[0].y[1:]) == [1.0, 0.5]
    ln2 = next(t for t in fig.data if t.name == "ln 2")
    assert list(ln2.y) == pytest.approx([math.log(2)] * 2)
    # success stays >= 0.95 from step 20: a dotted line there, in every panel
    assert {s.x0 for s in fig.layout.shapes} == {20}
    fig = plot_dynamics(Dynamics([0, 10], {"success@0.9": [0.5, 0.5]}))
    assert fig.layout.shapes == ()


def test_plot_up_to_a_step_draws_only_those_checkpoints():
    dyn = Dynamics([0, 10, 20, 30], {"success@0.9": [0.5, 0.5, 1.0, 1.0]})
    fig = plot_dynamics(dyn, max_step=20)
    assert list(fig.data[0].x) == [0, 10, 20] and list(fig.data[0].y) == [0.5, 0.5, 1.0]
    assert fig.layout.legend5.y == pytest.approx(fig.layout.yaxis5.domain[1])


def test_report_adds_a_close_up_when_the_escape_is_densely_recorded(run, tmp_path):
    root, *_ = run
    model = dtlens.load(root / "train" / "step_4")
    steps = list(range(0, 100, 10))  # escape at 20: 7 checkpoints up to 60 -> no close-up
    success = [0.5, 0.5] + [1.0] * 8
    Dynamics(steps, {"success@0.9": success}).save(root / "train" / "step_4" / DYNAMICS_FILE)
    assert len(dynamics_section.run(model, ReportConfig()).figures) == 1
    steps = list(range(0, 100, 5))  # escape at 20: 13 checkpoints up to 60 -> close-up
    success = [0.5] * 4 + [1.0] * 16
    Dynamics(steps, {"success@0.9": success}).save(root / "train" / "step_4" / DYNAMICS_FILE)
    figures = dynamics_section.run(model, ReportConfig()).figures
    assert len(figures) == 2 and max(figures[1].data[0].x) == 60
    (root / "train" / "step_4" / DYNAMICS_FILE).unlink()


def test_cli_writes_the_record_and_the_figure(run, capsys):
    root, _, _, data = run
    out = root / "out"
    assert (
        main(["dynamics", "--run-dir", str(root / "train"), "--out", str(out), "--no-progress"])
        == 0
    )
    written = Dynamics.load(out / DYNAMICS_FILE)
    direct = training_dynamics(root / "train", data, show_progress=False)
    assert written.steps == direct.steps
    for name, values in direct.measures.items():
        assert written.measures[name] == pytest.approx(values, nan_ok=True), name
    assert (out / "dynamics.html").exists()
    assert "2 checkpoints measured" in capsys.readouterr().out


def test_cli_without_demonstrations_names_the_fix(run, tmp_path, capsys):
    root, *_ = run
    run_dir = tmp_path / "copy"
    import shutil

    shutil.copytree(root / "train", run_dir)
    state_path = run_dir / "step_4" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["metadata"]["data"].pop("file")
    state_path.write_text(json.dumps(state))
    assert main(["dynamics", "--run-dir", str(run_dir), "--no-progress"]) == 2
    assert "pass --demos" in capsys.readouterr().err


def test_report_section_reads_the_file_beside_the_weights(run, tmp_path):
    root, *_ = run
    model = dtlens.load(root / "train" / "step_4")
    section = dynamics_section.run(model, ReportConfig())
    assert section.numbers == {"recorded": False} and not section.figures
    assert "dtlens dynamics" in section.this_model
    dyn = Dynamics([0, 4, 8], {"success@0.9": [0.5, 1.0, 1.0], "decision_loss": [0.69, 0.1, 0.05]})
    dyn.save(root / "train" / "step_4" / DYNAMICS_FILE)
    section = dynamics_section.run(dtlens.load(root / "train" / "step_4"), ReportConfig())
    assert section.numbers["plateau_broke_at"] == 4
    assert section.numbers["n_checkpoints"] == 3
    assert section.numbers["final"] == {"success@0.9": 1.0, "decision_loss": 0.05}
    assert "from step 4 (of 8)" in section.this_model
    assert len(section.figures) == 1
    section.to_json()  # finite numbers only
    (root / "train" / "step_4" / DYNAMICS_FILE).unlink()


def test_model_without_a_directory_has_no_dynamics():
    model = dtlens.HookedDecisionTransformer(dtlens.DTConfig(**TINY))
    assert model.checkpoint_dir is None
    assert dynamics_section.run(model, ReportConfig()).numbers == {"recorded": False}


def test_probe_values_are_accuracies_of_held_out_windows(run):
    root, _, _, data = run
    dyn = training_dynamics(root / "train", data, show_progress=False)
    n_test = math.ceil(0.3 * len(data))
    for name, values in dyn.measures.items():
        if name.startswith("probe/"):
            for v in values:
                assert 0 <= v <= 1 and np.isclose(v * n_test, round(v * n_test)), (name, v)


def test_report_text_says_when_a_measure_started_past_its_threshold():
    dyn = Dynamics(
        [0, 25, 50, 75],
        {"probe/L1": [0.98, 0.87, 0.99, 1.0], "success@0.9": [0.0, 0.5, 0.5, 1.0]},
    )
    text = dynamics_section.describe(dyn)
    assert "probe/last at 50, success@0.9 at 75" in text
    assert "was 0.98 in the initial weights already, fell to 0.87 on the plateau" in text


def test_cli_checks_out_before_measuring(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    out = str(tmp_path / "file.txt" / "dynamics")
    # the run directory does not exist either: --out is checked first
    assert main(["dynamics", "--run-dir", str(tmp_path / "absent"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} cannot be created" in err, err
