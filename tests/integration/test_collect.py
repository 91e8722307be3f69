"""Collecting demonstrations: specs, reproducibility, append, the CLI, the real LSTM agent.

The CLI's safety: ``--out`` is checked before any episode is played (a path under a
regular file, a directory); Ctrl+C while collecting (injected into the collection, and
a real SIGINT to a subprocess) or half-way through writing the file exits 130 with one
line and leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dtlens.data.collect as collect_lib
from dtlens.cli import collect as collect_cli
from dtlens.cli import main
from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.data.collect import SamplingSpec, collect_demonstrations, parse_sampling_spec
from dtlens.data.demonstrations import Demonstrations
from dtlens.errors import ConfigError, OutputPathError
from tests.conftest import ORIGINAL_LSTM, requires_shared

ENV_ID = "MiniGrid-MemoryS7FixedStart-v0"
FIELDS = ("obs", "actions", "rewards", "timesteps", "episode_starts", "terminated", "truncated")


def collect(spec, **kwargs) -> Demonstrations:
    kwargs = {"n_envs": 3, "show_progress": False, **kwargs}
    return collect_demonstrations(BoltzmannPlanner(), ENV_ID, spec, **kwargs)


def same_arrays(a: Demonstrations, b: Demonstrations) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


@pytest.fixture(scope="module")
def mixed() -> Demonstrations:
    return collect(["1:4", "5:4"], seed=7)


def test_parse_sampling_spec_forms():
    specs = parse_sampling_spec(["1:8000", "5:16000", "greedy:3", "topk3:2", "topk2@0.5:1"])
    assert specs == [
        SamplingSpec(1.0, 8000),
        SamplingSpec(5.0, 16000),
        SamplingSpec(0.0, 3),
        SamplingSpec(1.0, 2, top_k=3),
        SamplingSpec(0.5, 1, top_k=2),
    ]
    assert [s.label for s in specs[2:]] == ["greedy", "top3@temperature=1", "top2@temperature=0.5"]
    for bad, message in [
        ("1", "TEMPERATURE:N_EPISODES"),
        ("x:3", "bad temperature"),
        ("-1:3", "temperature must be"),
        ("1:0", "at least 1"),
        ("topk0:3", "top_k"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_sampling_spec([bad])


def test_greedy_planner_collects_optimal_episodes():
    demos = collect(["greedy:5"], seed=0, max_steps=20)
    assert demos.episode_lengths.tolist() == [6] * 5
    np.testing.assert_allclose(demos.episode_returns, 1 - 0.9 * 6 / 20, rtol=1e-6)
    assert demos.actions.reshape(5, 6)[:, :4].tolist() == [[2, 2, 2, 2]] * 5
    assert demos.timesteps.reshape(5, 6).tolist() == [list(range(6))] * 5
    s = demos.summary()
    assert (s["success"], s["failure"], s["truncated"]) == (5, 0, 0)


def test_collection_is_reproducible_and_independent_of_n_envs(mixed):
    assert same_arrays(mixed, collect(["1:4", "5:4"], seed=7))
    assert same_arrays(mixed, collect(["1:4", "5:4"], seed=7, n_envs=5))
    assert not same_arrays(mixed, collect(["1:4", "5:4"], seed=8))


def test_header_and_groups(mixed):
    part = mixed.header["parts"][0]
    assert mixed.header["env_id"] == ENV_ID and mixed.header["max_steps"] == 50
    assert [g["label"] for g in part["sampling"]] == ["temperature=1", "temperature=5"]
    assert part["seed"] == 7 and part["agent"] == "BoltzmannPlanner"
    groups = mixed.summary()["groups"]
    assert [g["n_episodes"] for g in groups.values()] == [4, 4]
    # every episode ends at a target or at the step limit, with the matching reward
    returns, lengths = mixed.episode_returns, mixed.episode_lengths
    success = returns > 0
    np.testing.assert_allclose(returns[success], 1 - 0.9 * lengths[success] / 50, rtol=1e-5)
    assert np.all(mixed.terminated | (lengths == 50))


def test_append_continues_the_episode_numbering():
    first = collect(["2:3"], seed=1)
    both = collect(["2:3"], seed=1, append=first)
    at_once = collect(["2:6"], seed=1)
    assert same_arrays(both, at_once)  # episodes 3..5 get the seeds of episodes 3..5
    assert [p["first_episode"] for p in both.header["parts"]] == [0, 3]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    collect_cli.add_parser(sub)
    return collect_cli.run(parser.parse_args(["collect", *argv]))


def test_cli_writes_appends_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "demos.npz"
    argv = ["--temp", "greedy:2", "--out", str(out), "--n-envs", "2", "--no-progress"]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "part0/greedy" in printed and "100.0%" in printed
    assert Demonstrations.load(out).n_episodes == 2
    with pytest.raises(ConfigError, match="exists"):
        run_cli(argv)
    assert run_cli([*argv, "--append"]) == 0
    assert Demonstrations.load(out).n_episodes == 4
    with pytest.raises(ConfigError, match="needs an existing file"):
        run_cli([*argv[:3], str(tmp_path / "new.npz"), *argv[4:], "--append"])
    with pytest.raises(ConfigError, match="--agent must be"):
        run_cli([*argv, "--overwrite", "--agent", str(tmp_path / "nope.pt")])


@requires_shared(ORIGINAL_LSTM)
def test_collect_with_the_original_lstm_agent(tmp_path, capsys):
    out = tmp_path / "lstm.npz"
    argv = ["--agent", str(ORIGINAL_LSTM), "--temp", "1:6", "--out", str(out), "--no-progress"]
    assert run_cli([*argv, "--n-envs", "3", "--seed", "2"]) == 0
    demos = Demonstrations.load(out)
    assert demos.n_episodes == 6
    assert demos.header["parts"][0]["agent"] == f"original_lstm:{ORIGINAL_LSTM.name}"
    assert np.all(demos.terminated | (demos.episode_lengths == 50))
    # the LSTM is recurrent per env: its episodes do not depend on n_envs either
    again = tmp_path / "again.npz"
    assert (
        run_cli([*argv[:4], "--out", str(again), "--no-progress", "--n-envs", "2", "--seed", "2"])
        == 0
    )
    assert same_arrays(demos, Demonstrations.load(again))


def test_cli_checks_out_before_collecting(tmp_path, monkeypatch):
    played = []
    monkeypatch.setattr(collect_lib, "collect_demonstrations", lambda *a, **k: played.append(1))
    (tmp_path / "file.txt").write_text("x")
    for out, message in [
        (
            tmp_path / "file.txt" / "sub" / "d.npz",
            r"--out .*file\.txt/sub/d\.npz cannot be created",
        ),
        (tmp_path, "is a directory, but a file is written there"),
    ]:
        with pytest.raises(OutputPathError, match=message):
            run_cli(["--temp", "greedy:2", "--out", str(out), "--no-progress"])
    assert played == []


def test_ctrl_c_while_collecting_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demos.npz"
    argv = ["collect", "--temp", "greedy:2", "--out", str(out), "--n-envs", "2", "--no-progress"]
    assert main(argv) == 0
    before = out.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(collect_lib, "collect_demonstrations", interrupted)
    capsys.readouterr()
    assert main([*argv, "--append"]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"dtlens collect: interrupted; no episode was written and no partial file was left "
        f"({out} is unchanged); rerun the same command"
    ]
    assert out.read_bytes() == before


def test_ctrl_c_while_saving_leaves_the_old_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demos.npz"
    argv = ["collect", "--temp", "greedy:2", "--out", str(out), "--n-envs", "2", "--no-progress"]
    assert main(argv) == 0
    before = out.read_bytes()
    real = np.savez_compressed

    def interrupted_half_way(file, **arrays):
        real(file, **arrays)
        file.truncate(len(before) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted_half_way)
    capsys.readouterr()
    assert main([*argv, "--append"]) == 130
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no episode was written" in err, err
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["demos.npz"]


def test_real_sigint_exits_130_with_one_line(tmp_path):
    out = tmp_path / "demos.npz"
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "dtlens.cli", "collect", "--temp", "1:100000"]
    with log.open("w") as stderr:
        process = subprocess.Popen([*command, "--out", str(out)], stderr=stderr, text=True)
        deadline = time.monotonic() + 120
        while "episode" not in log.read_text():  # the progress bar: collection has started
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "collection did not start within 120 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    err = log.read_text()
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last == (
        f"dtlens collect: interrupted; no episode was written and no partial file was left "
        f"({out} was not created); rerun the same command"
    )
    assert list(tmp_path.iterdir()) == [log]
