"""``dtlens train`` from the command line: a run, and Ctrl+C then ``--resume``.

The interruption is real: the command runs in a subprocess and gets SIGINT once its
first checkpoint is on disk; it must exit 130 with one line naming that checkpoint, and
the same command plus ``--resume`` must finish the run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import dtlens
from dtlens.cli import main
from tests.conftest import planner_demos

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_FLAGS = [
    "--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--d-mlp", "16",
    "--batch-size", "8", "--warmup-steps", "1", "--eval-every", "5", "--log-every", "5",
    "--device", "cpu", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def demos_path(tmp_path_factory):
    return planner_demos("1:30").save(tmp_path_factory.mktemp("demos") / "demos.npz")


def test_train_writes_the_final_model_and_names_its_data(demos_path, tmp_path):
    run_dir = tmp_path / "run"
    flags = ["--demos", str(demos_path), "--run-dir", str(run_dir), "--total-steps", "6"]
    assert main(["train", *flags, "--checkpoint-every", "3", *TINY_FLAGS]) == 0
    model = dtlens.load(run_dir / "final")
    assert model.cfg.d_model == 16
    state = json.loads((run_dir / "step_6" / "trainer_state.json").read_text())
    assert state["metadata"]["data"]["file"] == str(demos_path)
    assert sorted(p.name for p in run_dir.glob("step_*")) == ["step_0", "step_3", "step_6"]


def test_ctrl_c_exits_130_with_one_line_and_resume_finishes(demos_path, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "dtlens.cli", "train", "--demos", str(demos_path),
        "--run-dir", str(run_dir), "--total-steps", "150", "--checkpoint-every", "25",
        *TINY_FLAGS,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "step_25" / "trainer_state.json").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("dtlens train: interrupted; last checkpoint")
    assert lines[0].endswith("resume with the same command plus --resume")
    assert not (run_dir / "final").exists()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert dtlens.load(run_dir / "final").metadata["training"]["step"] == 150


def test_a_second_run_into_the_same_directory_needs_resume_or_overwrite(
    demos_path, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    flags = ["--demos", str(demos_path), "--run-dir", str(run_dir), *TINY_FLAGS]
    assert main(["train", *flags, "--total-steps", "4"]) == 0
    before = (run_dir / "metrics.jsonl").read_text()
    weights = (run_dir / "final" / "model.safetensors").read_bytes()
    capsys.readouterr()

    # nothing is replaced silently: the command stops before any work
    assert main(["train", *flags, "--total-steps", "6", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (run_dir / "metrics.jsonl").read_text() == before
    assert (run_dir / "final" / "model.safetensors").read_bytes() == weights
    assert main(["train", *flags, "--total-steps", "6", "--resume", "--overwrite"]) == 2

    # --overwrite replaces the whole run: no step or metric of the old one is left
    assert main(["train", *flags, "--total-steps", "6", "--seed", "1", "--overwrite"]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in records if "train/loss" in r] == [5, 6]
    assert dtlens.load(run_dir / "final").metadata["training"]["step"] == 6


def test_train_checkpoints_by_default(demos_path, tmp_path):
    run_dir = tmp_path / "run"
    flags = ["--demos", str(demos_path), "--run-dir", str(run_dir), "--total-steps", "20"]
    assert main(["train", *flags, *TINY_FLAGS]) == 0
    steps = sorted(int(p.name[5:]) for p in run_dir.glob("step_*"))
    assert steps == list(range(0, 21, 2))  # total_steps // 10


def test_output_paths_are_checked_before_the_demonstrations_are_read(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    missing_demos = str(tmp_path / "absent.npz")  # reading it would fail: it is never read
    argv = ["train", "--demos", missing_demos, *TINY_FLAGS, "--total-steps", "2"]
    assert main([*argv, "--run-dir", str(tmp_path / "file.txt" / "run")]) == 2
    err = capsys.readouterr().err
    assert "--run-dir" in err and "file.txt is a file, not a directory" in err, err
    assert (
        main([*argv, "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "file.txt")]) == 2
    )
    assert "--out" in capsys.readouterr().err


def test_an_out_holding_a_model_needs_overwrite(demos_path, tmp_path, capsys):
    out = tmp_path / "model"
    dtlens.save(dtlens.load("memorydt"), out)
    before = (out / "model.safetensors").read_bytes()
    flags = ["--demos", str(demos_path), "--out", str(out), *TINY_FLAGS, "--total-steps", "2"]
    assert main(["train", *flags, "--run-dir", str(tmp_path / "run")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before
    assert main(["train", *flags, "--run-dir", str(tmp_path / "run"), "--overwrite"]) == 0
    assert dtlens.load(out).cfg.d_model == 16
