"""Tests of TrainConfig, the Trainer loop, its checkpoints and bit-identical resume.

The data is 10 real episodes of MiniGrid-MemoryS7FixedStart-v0, played by scripted
action sequences in the two layouts with a key instruction: the optimal route, the
route to the wrong target (return 0), and the optimal route after 2, 5 or 8 left-right
dithers (returns 0.82, 0.712, 0.604). Every window's next action is determined by
its context, but at the decision square only together with the RTG (optimal and
wrong episodes share every observation and action until they turn): a model that
ignores the RTG cannot get below a loss floor computed in the test.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import dtlens
from dtlens.data.windows import WindowSampler
from dtlens.env import SCENARIOS, optimal_actions
from dtlens.errors import CheckpointError, ConfigError, OutputPathError
from dtlens.training.config import TrainConfig
from dtlens.training.run_dirs import (
    STATE_JSON,
    STATE_TENSORS,
    earlier_run,
    latest_checkpoint,
    refuse_earlier_run,
    remove_run,
    step_dirs,
)
from dtlens.training.trainer import Trainer, masked_cross_entropy
from tests.unit.trainer_data import TINY, _config, scripted_demos


@pytest.fixture(scope="module")
def demos():
    return scripted_demos()


# ------------------------------------------------------------------- config
def test_config_defaults_and_roundtrip():
    cfg = _config()
    assert cfg.n_steps == 6  # (17 + 1) // 3
    assert cfg.model.seed == 0  # filled from the run seed
    assert cfg.model_type == "decision_transformer"
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("lr", -1.0, "lr=-1.0"),
        ("batch_size", 0, "batch_size=0"),
        ("warmup_steps", 500, "warmup_steps=500"),
        ("n_steps", 7, "n_steps=7"),
        ("betas", (0.9, 1.5), "betas"),
        ("val_fraction", 1.0, "val_fraction=1.0"),
        ("logger", "mlflow", "logger='mlflow'"),
        ("device", "gpu7", "device='gpu7'"),
        ("lr_end", 1.0, "lr_end=1.0"),
        ("window_end_fraction", 1.5, "window_end_fraction=1.5"),
        ("window_weighting", "steps", "window_weighting='steps'"),
    ],
)
def test_config_rejects_bad_values(field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        _config(**{field: value})


def test_model_type_contradicting_the_model_config_is_an_error():
    with pytest.raises(ConfigError, match="contradicts"):
        _config(model=dtlens.DTConfig(**TINY), model_type="clone")


def test_config_rejects_unknown_keys():
    data = _config().to_dict() | {"learning_rate": 1.0}
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict(data)


def test_clone_model_type_fills_the_model_config():
    cfg = _config(model={**TINY, "n_ctx": 11}, model_type="clone")
    assert cfg.model.model_type == "clone" and cfg.n_steps == 6  # (11 + 1) // 2


def test_lr_schedule_hand_values():
    cfg = _config(lr=1.0, lr_end=0.1, warmup_steps=4, total_steps=12)
    assert [cfg.lr_at(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # cosine from step 4 (progress 0) to step 12 (progress 1); halfway = mean of ends
    assert cfg.lr_at(8) == pytest.approx(0.55)
    assert cfg.lr_at(6) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert cfg.lr_at(12) == pytest.approx(0.1)


def test_lr_warm_restarts_hand_values():
    # warm-up 2, then 8 steps in 2 cosine cycles of 4 steps, each from 1.0 to 0.0
    cfg = _config(lr=1.0, lr_end=0.0, warmup_steps=2, total_steps=10, lr_cycles=2)
    expected = [0.5, 1.0, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5]
    expected += [(1 + math.cos(3 * math.pi / 4)) / 2, 1.0, (1 + math.cos(math.pi / 4)) / 2]
    expected += [0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    assert [cfg.lr_at(s) for s in range(11)] == pytest.approx(expected)
    assert cfg.lr_at(50) == 0.0  # past the end: lr_end


def test_lr_warm_restarts_match_transformers_hard_restarts():
    # the same multiplier as transformers' get_cosine_with_hard_restarts_schedule_with_warmup
    # after warm-up (its warm-up starts at 0, ours at lr / warmup_steps)
    transformers = pytest.importorskip("transformers")
    cfg = _config(lr=1.0, lr_end=0.0, warmup_steps=10, total_steps=100, lr_cycles=3)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    schedule = transformers.get_cosine_with_hard_restarts_schedule_with_warmup(
        opt, num_warmup_steps=10, num_training_steps=100, num_cycles=3
    )
    reference = [schedule.lr_lambdas[0](s) for s in range(10, 101)]
    assert [cfg.lr_at(s) for s in range(10, 101)] == pytest.approx(reference, abs=1e-12)


def test_weight_decay_applies_to_matrices_only(demos):
    # With a zero gradient, one AdamW step changes a parameter only through the decoupled
    # decay: p <- p * (1 - lr * weight_decay) for matrices; biases and norm gains stay.
    cfg = _config(lr=0.1, lr_end=0.1, warmup_steps=0, total_steps=5, weight_decay=0.3)
    trainer = Trainer(cfg, WindowSampler(demos, n_steps=6))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad()
    for p in trainer.model.parameters():
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    for name, p in trainer.model.named_parameters():
        factor = 1 - 0.1 * 0.3 if before[name].ndim >= 2 else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, msg=name)
    decayed = sum(p.numel() for p in trainer.model.parameters() if p.ndim >= 2)
    groups = {
        g["weight_decay"]: sum(p.numel() for p in g["params"])
        for g in trainer.optimizer.param_groups
    }
    assert groups == {
        0.3: decayed,
        0.0: sum(p.numel() for p in trainer.model.parameters()) - decayed,
    }


# --------------------------------------------------------------------- loss
def test_masked_cross_entropy_matches_plain_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 7, generator=g)
    targets = torch.randint(0, 7, (3, 4), generator=g)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    log_probs = logits.log_softmax(-1)
    expected = (
        -sum(log_probs[b, t, targets[b, t]] for b in range(3) for t in range(4) if mask[b, t])
        / mask.sum()
    )
    assert masked_cross_entropy(logits, targets, mask) == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(ConfigError, match="no step"):
        masked_cross_entropy(logits, targets, torch.zeros_like(mask))


# ------------------------------------------------------------------ overfit
def _loss_floor_without_rtg(sampler: WindowSampler) -> float:
    """Best mean loss of any predictor that sees a window but not its RTGs.

    Windows identical up to RTG form a group; the best such predictor outputs the
    group's empirical action distribution, so its loss is the conditional entropy.
    """
    counts: dict[bytes, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for w in sampler.iterate(256):
        b = w.batch
        for i in range(b.batch_size):
            last = b.n_steps - 1  # windows end at their step (left-padded)
            key = b.obs[i].numpy().tobytes() + b.actions[i].numpy().tobytes()
            key += b.timesteps[i].numpy().tobytes()
            counts[key][int(w.targets[i, last])] += 1
    total = sum(sum(c.values()) for c in counts.values())
    entropy = 0.0
    for c in counts.values():
        n = sum(c.values())
        entropy -= sum(k * math.log(k / n) for k in c.values())
    return entropy / total


@pytest.fixture(scope="module")
def overfit(demos):
    sampler = WindowSampler(demos, n_steps=6)
    trainer = Trainer(_config(), sampler, sampler)
    initial = trainer.validation_loss()
    history = trainer.train(show_progress=False)
    return trainer, history, sampler, initial


def test_tiny_dt_overfits_ten_episodes(overfit):
    trainer, history, sampler, initial = overfit
    floor = _loss_floor_without_rtg(sampler)

    # Without the RTG, per layout (5 episodes, 60 steps): step 1 is forward in 2 episodes
    # and left in 3 (5 H(2/5)); the turn of the optimal vs wrong route is a coin flip
    # (2 ln 2); after 2 dithers, 1 of 3 episodes goes forward (3 H(1/3)); after 5, 1 of 2
    # (2 ln 2). Every other step is determined by the observations and actions alone.
    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    per_layout = 5 * h(2 / 5) + 2 * math.log(2) + 3 * h(1 / 3) + 2 * math.log(2)
    assert floor == pytest.approx(2 * per_layout / 120, rel=1e-6)
    # ... and the loss on every step's own window (each window ends at one step)
    model = trainer.model.eval()
    total = count = 0.0
    with torch.no_grad():
        for w in sampler.iterate(256):
            logits = model.action_logits(w.batch)[:, -1]  # windows end at their step
            targets = w.targets[:, -1]
            total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
            count += len(targets)
    per_step = total / count
    # uniform guessing is ln 7 = 1.95; the loss must beat the RTG-blind floor by 2x,
    # i.e. the model reads the RTG to choose where to turn
    assert per_step < floor / 2
    # an untrained model is near uniform (ln 7 = 1.95); trained, below 0.05
    assert initial > 1.5 and history.val[-1]["val/loss"] < 0.05
    assert [v["step"] for v in history.val] == [100, 200, 300, 400]


def test_trained_model_walks_the_routes_it_was_shown(overfit):
    trainer = overfit[0]
    from dtlens.training.evaluate import rollout

    res = rollout(
        trainer.model,
        initial_rtg=[0.892, 0.892, 0.0, 0.0],
        seeds=[0, 0, 0, 0],
        layouts=[SCENARIOS[0], SCENARIOS[1]] * 2,
    )
    assert res.rewards.tolist() == pytest.approx([0.892, 0.892, 0.0, 0.0])
    assert res.actions[0] == tuple(int(a) for a in optimal_actions("key", "key"))
    assert res.actions[2] == tuple(int(a) for a in optimal_actions("key", "key", to="other"))


# ----------------------------------------------------------- resume / checkpoints
def test_resume_is_bit_identical(demos, tmp_path):
    train = WindowSampler(demos, n_steps=6, episode_indices=np.arange(8))
    val = WindowSampler(demos, n_steps=6, episode_indices=np.array([8, 9]))
    cfg = _config(
        total_steps=7,
        warmup_steps=2,
        batch_size=8,
        eval_every=2,
        checkpoint_every=3,
        weight_decay=0.1,
        run_dir=str(tmp_path / "run"),
    )
    straight = Trainer(cfg, train, val)
    initial = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight.train(show_progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "metrics.jsonl",
        "step_0",
        "step_3",
        "step_6",
        "step_7",
    ]
    # step_0 holds the initial weights (where training dynamics start)
    first = dtlens.load(tmp_path / "run" / "step_0").state_dict()
    assert all(torch.equal(first[k], initial[k]) for k in initial)
    step3 = tmp_path / "run" / "step_3"
    assert sorted(p.name for p in step3.iterdir()) == sorted(
        ["config.json", "model.safetensors", STATE_JSON, STATE_TENSORS]
    )
    resumed = Trainer.resume(step3, train, val)
    assert resumed.step == 3
    resumed.train(show_progress=False)
    assert resumed.step == 7
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val/loss"] for r in resumed.history.val] == [
        r["val/loss"] for r in straight.history.val
    ]
    # the checkpoint is an ordinary dtlens checkpoint too
    loaded = dtlens.load(tmp_path / "run" / "step_7")
    assert loaded.metadata["training"]["step"] == 7
    assert torch.equal(loaded.state_dict()["time_embed.weight"], a["time_embed.weight"])


def test_a_checkpoint_save_failing_half_way_leaves_the_last_one_resumable(
    demos, tmp_path, monkeypatch
):
    import os

    sampler = WindowSampler(demos, n_steps=6)
    cfg = _config(total_steps=4, warmup_steps=1, batch_size=4, checkpoint_every=2,
                  run_dir=str(tmp_path / "run"))  # fmt: skip
    trainer = Trainer(cfg, sampler)
    trainer.train(show_progress=False, stop_at=2)
    step2 = tmp_path / "run" / "step_2"
    before = {p.name: p.read_bytes() for p in step2.iterdir()}
    # saving step_2 again: the model files are written, then the disk fills up while the
    # trainer state is written
    calls = []
    real_fsync = os.fsync

    def disk_full_at_the_trainer_state(fd):
        calls.append(fd)
        # model.safetensors, config.json, their directory, then trainer_state.safetensors
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_at_the_trainer_state)
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint(step2)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in step2.iterdir()}
    assert after.keys() == before.keys()  # no temporary file left
    assert after[STATE_JSON] == before[STATE_JSON]
    assert after[STATE_TENSORS] == before[STATE_TENSORS]
    assert Trainer.resume(step2, sampler).step == 2


def test_a_damaged_trainer_state_is_named(demos, tmp_path):
    sampler = WindowSampler(demos, n_steps=6)
    cfg = _config(total_steps=2, warmup_steps=1, batch_size=4, checkpoint_every=2,
                  run_dir=str(tmp_path / "run"))  # fmt: skip
    Trainer(cfg, sampler).train(show_progress=False)
    step2 = tmp_path / "run" / "step_2"
    tensors = step2 / STATE_TENSORS
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0x01
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"trainer_state\.safetensors is not the file"):
        Trainer.resume(step2, sampler)
    state = json.loads((step2 / STATE_JSON).read_text())
    state["history"] = "lost"
    state.pop("tensors_sha256")
    (step2 / STATE_JSON).write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"trainer_state\.json is damaged"):
        Trainer.resume(step2, sampler)


def test_checkpoint_steps_add_dense_checkpoints(demos, tmp_path):
    cfg = _config(
        total_steps=9,
        warmup_steps=1,
        batch_size=4,
        checkpoint_every=4,
        checkpoint_steps=[1, 2, 3],
        run_dir=str(tmp_path / "run"),
    )
    Trainer(cfg, WindowSampler(demos, n_steps=6)).train(show_progress=False)
    steps = sorted(int(p.name[5:]) for p in (tmp_path / "run").glob("step_*"))
    assert steps == [0, 1, 2, 3, 4, 8, 9]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"checkpoint_steps": [0]}, "1..total_steps"),
        ({"checkpoint_steps": [5000]}, "1..total_steps"),
        ({"checkpoint_steps": 5}, "list of steps"),
        ({"checkpoint_steps": [5]}, "needs checkpoint_every"),
    ],
)
def test_checkpoint_steps_validation(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        _config(**overrides)


def test_stop_at_then_train_again_equals_straight(demos):
    sampler = WindowSampler(demos, n_steps=6)
    cfg = _config(total_steps=5, warmup_steps=1, batch_size=8)
    one = Trainer(cfg, sampler)
    one.train(show_progress=False)
    two = Trainer(cfg, sampler)
    two.train(show_progress=False, stop_at=2)
    assert two.step == 2
    two.train(show_progress=False)
    assert all(
        torch.equal(p, q)
        for p, q in zip(one.model.parameters(), two.model.parameters(), strict=True)
    )


def test_training_changes_weights_and_follows_the_schedule(demos):
    sampler = WindowSampler(demos, n_steps=6)
    cfg = _config(total_steps=4, warmup_steps=2, batch_size=8, log_every=1)
    trainer = Trainer(cfg, sampler)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.train(show_progress=False)
    assert [r["train/lr"] for r in history.train] == [cfg.lr_at(s) for s in range(4)]
    after = trainer.model.state_dict()
    assert not torch.equal(before["state_embed.weight"], after["state_embed.weight"])


def test_latest_checkpoint_and_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no trainer checkpoint"):
        latest_checkpoint(tmp_path)
    for k in (2, 10):
        (tmp_path / f"step_{k}").mkdir()
        (tmp_path / f"step_{k}" / STATE_JSON).write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "step_10"


def test_earlier_run_lists_refuses_and_removes_both_kinds_of_run(tmp_path):
    # a `dtlens train` run: step_k/, final/, metrics.jsonl; plus files no run writes
    dt = tmp_path / "dt"
    for name in ("step_9", "step_10", "final", "notes", "update_000001"):
        (dt / name).mkdir(parents=True)
    (dt / "step_10" / STATE_JSON).write_text("{}")
    (dt / "metrics.jsonl").write_text("{}\n")
    (dt / "history.json").write_text("[]")
    found = earlier_run(dt, "step_", "metrics.jsonl")
    assert [p.name for p in found] == ["final", "step_10", "step_9", "metrics.jsonl"]
    # a `dtlens train-ppo` run in the same folder is read with its own names
    assert [p.name for p in earlier_run(dt, "update_", "history.json")] == [
        "final",
        "update_000001",
        "history.json",
    ]
    assert earlier_run(tmp_path / "none", "step_", "metrics.jsonl") == []
    refuse_earlier_run("runs/dt", [], "never raised")
    with pytest.raises(OutputPathError) as err:
        refuse_earlier_run("runs/dt", found, "pass --overwrite")
    assert str(err.value) == (
        "runs/dt already holds a run (final, step_10, step_9, metrics.jsonl); pass --overwrite"
    )
    with pytest.raises(OutputPathError, match=r"run \(a, b, c, d, \.\.\.\); x$"):
        refuse_earlier_run("out", [Path(n) for n in "abcde"], "x")
    remove_run(found)
    assert sorted(p.name for p in dt.iterdir()) == ["history.json", "notes", "update_000001"]
    # step_dirs: only numbered checkpoints holding the file, sorted by number
    for k in ("000002", "000010", "x"):
        (dt / f"update_{k}").mkdir()
        (dt / f"update_{k}" / "agent.json").write_text("{}")
    assert step_dirs(dt, "agent.json", prefix="update_") == [
        (2, dt / "update_000002"),
        (10, dt / "update_000010"),
    ]
    assert step_dirs(dt, STATE_JSON) == []


def test_checkpoint_every_needs_a_destination(demos):
    sampler = WindowSampler(demos, n_steps=6)
    with pytest.raises(ConfigError, match="run_dir"):
        Trainer(_config(checkpoint_every=5), sampler)


def test_missing_logger_package_is_a_clear_error(demos, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(ConfigError, match="pip install wandb"):
        Trainer(_config(logger="wandb"), WindowSampler(demos, n_steps=6))


def test_evaluator_runs_at_its_interval(demos):
    sampler = WindowSampler(demos, n_steps=6)
    calls = []

    def evaluator(model):
        calls.append(model.training)
        return {"score": float(len(calls))}

    trainer = Trainer(
        _config(total_steps=5, warmup_steps=1, batch_size=4, online_eval_every=2),
        sampler,
        evaluator=evaluator,
    )
    history = trainer.train(show_progress=False)
    assert [r["step"] for r in history.eval] == [2, 4, 5]
    assert [r["eval/score"] for r in history.eval] == [1.0, 2.0, 3.0]
    assert calls == [False, False, False]  # evaluated in eval mode
    assert trainer.model.training
