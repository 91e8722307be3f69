"""The CLI's config flags are derived from the config dataclasses (dtlens.cli.flags).

Every field of TrainConfig (and its DTConfig), PPOConfig and ReportConfig is a flag of
its command, shown in ``--help`` with its doc and default; ``--config FILE.json`` plus
flags round-trips; a bad value is an error naming field and value, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import pytest

from dtlens.cli import build_parser, main
from dtlens.cli.flags import plain_text, show_default
from dtlens.cli.train import MODEL_DEFAULTS, build_config
from dtlens.config_io import field_docs
from dtlens.model.config import DTConfig
from dtlens.report.config import ReportConfig
from dtlens.training.config import TrainConfig
from dtlens.training.ppo_config import PPOConfig

#: command -> the config its flags build
COMMANDS = {"train": TrainConfig, "train-ppo": PPOConfig, "report": ReportConfig}
REQUIRED = {"train": ["--demos", "d.npz", "--run-dir", "r"], "train-ppo": ["--out", "o"]}


@pytest.fixture
def wide(monkeypatch):
    """argparse wraps help at $COLUMNS: no wrapping, so docs appear verbatim."""
    monkeypatch.setenv("COLUMNS", "100000")


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def flag_of(command: str, path: str) -> str:
    return subparser(command).get_default("_flags").flags[path]


def fields_of(cls: type, prefix: str = "") -> list[tuple[str, type, dataclasses.Field]]:
    """(path, owner class, field) of every leaf field, nested configs flattened."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name == "model" and cls is TrainConfig:
            out += fields_of(DTConfig, "model.")
        else:
            out.append((prefix + f.name, cls, f))
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_is_a_flag_with_its_doc_and_default_in_help(command, wide):
    cls = COMMANDS[command]
    text = " ".join(subparser(command).format_help().split())
    for path, owner, f in fields_of(cls):
        flag = flag_of(command, path)
        doc = " ".join(plain_text(field_docs(owner)[f.name]).split())
        default = MODEL_DEFAULTS.get(f.name) if path.startswith("model.") else None
        if default is None:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        match = re.search(re.escape(flag) + r"[ ,]", text)
        assert match, f"{command}: no flag {flag} for {owner.__name__}.{f.name}"
        assert doc in text, f"{command} --help lacks the doc of {owner.__name__}.{f.name}"
        after = text[text.index(doc) + len(doc) :]
        if (command, path) == ("train", "checkpoint_every"):
            assert after.startswith(" (default: total_steps // 10 in dtlens train")
        elif (command, path) == ("train", "run_dir"):
            assert after.startswith(" (required)")
        else:
            shown = show_default(default)
            assert after.startswith(f" (default: {shown})"), (path, after[:60])


def test_flag_names_keep_the_old_spellings():
    names = {p: flag_of("train", p) for p in ("total_steps", "model.n_layers", "model.seed")}
    assert names == {
        "total_steps": "--total-steps",
        "model.n_layers": "--n-layers",
        "model.seed": "--model.seed",  # TrainConfig has a seed of its own
    }
    args = subparser("train-ppo").parse_args(["--out", "o", "--env", "E", "--threads", "2"])
    assert (vars(args)["env_id"], vars(args)["num_threads"]) == ("E", 2)
    args = subparser("train-ppo").parse_args(["--out", "o", "--no-anneal-lr", "--no-progress"])
    assert (vars(args)["anneal_lr"], vars(args)["progress"]) == (False, False)


def argv_for(command: str, config) -> list[str]:
    """Flags that spell out every field of ``config`` (the inverse of the parser)."""
    data = config.to_dict()
    if command == "train":
        data = {k: v for k, v in data.items() if k != "model"} | {
            f"model.{k}": v for k, v in data["model"].items()
        }
    argv = []
    for path, value in data.items():
        flag = flag_of(command, path)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif path == "curriculum":
            argv += [flag, json.dumps(value)]
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, "none" if value is None else str(value)]
    return argv


EXAMPLES = {
    "train": TrainConfig(
        model=dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=11, gated_mlp=True),
        batch_size=8,
        lr=1e-3,
        betas=(0.8, 0.99),
        total_steps=40,
        warmup_steps=4,
        grad_clip=None,
        curriculum=[{"until_step": 10, "groups": ["temperature=1"], "replay": 0.25}],
        checkpoint_every=10,
        checkpoint_steps=(2, 4),
        run_dir="r",
        window_weighting="episode",
        device="cpu",
        seed=5,
    ),
    "train-ppo": PPOConfig(
        n_envs=4, n_steps=16, recurrence=4, total_steps=1000, anneal_lr=False, num_threads=1
    ),
    "report": ReportConfig(rtgs=(0.0, 0.5), seed=4, calibration_episodes=8, high_rtg=0.8),
}


def parsed_config(command: str, argv: list[str]):
    args = build_parser().parse_args([command, *REQUIRED.get(command, []), *argv])
    if command == "train":
        return build_config(args)
    from dtlens.cli.flags import config_from_args

    return config_from_args(args, args._flags)


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_for_every_field_round_trip(command):
    config = EXAMPLES[command]
    assert parsed_config(command, argv_for(command, config)) == config


@pytest.mark.parametrize("command", COMMANDS)
def test_config_file_round_trips_and_flags_override_it(command, tmp_path):
    config = EXAMPLES[command]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert parsed_config(command, ["--config", str(path)]) == config
    override = {"train": ["--lr", "0.01", "--n-layers", "3"], "train-ppo": ["--seed", "9"]}
    override["report"] = ["--seed", "9"]
    changed = parsed_config(command, ["--config", str(path), *override[command]])
    if command == "train":
        expected = dataclasses.replace(
            config, lr=0.01, model=dataclasses.replace(config.model, n_layers=3)
        )
    else:
        expected = dataclasses.replace(config, seed=9)
    assert changed == expected


def test_train_defaults_fill_what_the_file_leaves_out(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"model": {"d_model": 64}, "total_steps": 300}))
    config = parsed_config("train", ["--config", str(path)])
    assert config.model.d_model == 64 and config.model.n_layers == MODEL_DEFAULTS["n_layers"]
    assert config.checkpoint_every == 30  # total_steps // 10
    assert config.run_dir == "r"  # --run-dir wins over the file


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "TrainConfig.lr=-1.0 must be a finite number > 0"),
        (["--n-heads", "3"], "d_model=256 is not divisible by n_heads=3"),
        (["--curriculum", '[{"until_step": 5, "bogus": 1}]'], "unknown CurriculumPhase fields"),
        (["--checkpoint-steps", "0"], "checkpoint_steps=(0,) must be a list of steps"),
    ],
)
def test_bad_values_exit_2_naming_field_and_value(argv, message, tmp_path, capsys):
    base = ["train", "--demos", str(tmp_path / "d.npz"), "--run-dir", str(tmp_path / "r")]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dtlens train: error: ") and message in err, err
    assert not (tmp_path / "r").exists()  # nothing started


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--total-steps", "x"], "argument --total-steps: invalid int value: 'x'"),
        (["--logger", "mlflow"], "invalid choice: 'mlflow' (choose from wandb, tensorboard"),
        (["--betas", "0.9"], "argument --betas: expected 2 arguments"),
        (["--curriculum", "[{"], "argument --curriculum: not JSON"),
    ],
)
def test_argument_errors_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--demos", "d.npz", "--run-dir", "r", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_config_file_errors_name_the_file(tmp_path, capsys):
    base = ["train", "--demos", str(tmp_path / "d.npz"), "--run-dir", str(tmp_path / "r")]
    bad = tmp_path / "bad.json"
    for text, message in [
        ("{not json", "cannot read a JSON TrainConfig"),
        ("[1, 2]", "holds a JSON object (a dict of its fields), not a list"),
        ('{"learning_rate": 1}', "unknown TrainConfig fields ['learning_rate']"),
    ]:
        bad.write_text(text)
        assert main([*base, "--config", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err, err


def test_ppo_and_report_file_values_reach_the_config(tmp_path):
    path = tmp_path / "ppo.json"
    path.write_text(json.dumps({"total_steps": 4096, "n_envs": 8}))
    config = parsed_config("train-ppo", ["--config", str(path), "--n-envs", "4"])
    assert (config.total_steps, config.n_envs, config.n_steps) == (4096, 4, 64)
