"""The config classes share one serialiser and one set of validators (dtlens.config_io).

Every field of every config is documented (the docs are the CLI's help), every config
round-trips through JSON, and every error names class, field and value.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from dtlens.config_io import ConfigIO, config_from_dict, field_docs, field_types
from dtlens.data.agents.lstm import LSTMAgentConfig
from dtlens.errors import ConfigError
from dtlens.model.config import DTConfig
from dtlens.report.config import ReportConfig
from dtlens.training.config import CurriculumPhase, TrainConfig
from dtlens.training.ppo_config import PPOConfig

TINY = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=16, n_ctx=8)
EXAMPLES = [
    DTConfig(**TINY, act_fn="relu", gated_mlp=True, seed=3),
    DTConfig(**{**TINY, "n_ctx": 5}, obs_shape=(11,), token_embedding="huggingface"),
    TrainConfig(
        model=TINY,
        total_steps=50,
        warmup_steps=5,
        betas=(0.8, 0.99),
        checkpoint_every=10,
        checkpoint_steps=(2, 4),
        run_dir="r",
        curriculum=[{"until_step": 10, "groups": ["temperature=1"], "replay": 0.25}],
        logger="tensorboard",
    ),
    PPOConfig(n_envs=4, n_steps=16, recurrence=4, total_steps=1000, num_threads=1),
    LSTMAgentConfig(image_dim=8, memory_dim=4, seed=2),
    ReportConfig(rtgs=(0.0, 0.5), seed=4, calibration_episodes=8),
    CurriculumPhase(until_step=3, groups=("a",)),
]
CONFIGS = [DTConfig, TrainConfig, CurriculumPhase, PPOConfig, LSTMAgentConfig, ReportConfig]


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config
    assert isinstance(config, ConfigIO)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    """The class docstring documents every field (the docs are ``--help``'s)."""
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing, f"{cls.__name__} fields without a doc: {missing}"
    assert set(field_types(cls)) == {f.name for f in dataclasses.fields(cls)}


def test_docs_join_continuation_lines():
    docs = field_docs(TrainConfig)
    assert docs["lr_end"] == "learning rate at ``total_steps`` (cosine decay from ``lr`` to it)."
    assert docs["window_end_fraction"].startswith("probability that a training window")
    assert docs["window_end_fraction"].endswith("comparable across configs.")


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_unknown_and_missing_fields_are_named(cls):
    with pytest.raises(ConfigError, match=rf"unknown {cls.__name__} fields \['colour'\]; known"):
        cls.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match=f"a {cls.__name__} must be a dict of its fields"):
        config_from_dict(cls, [1, 2])


def test_missing_required_fields_are_named():
    with pytest.raises(ConfigError, match=r"DTConfig needs the fields \['d_model', 'n_heads'"):
        DTConfig.from_dict({"n_layers": 1})
    with pytest.raises(ConfigError, match=r"TrainConfig needs the fields \['model'\]"):
        TrainConfig.from_dict({})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: DTConfig(**{**TINY, "n_layers": 0}),
            "DTConfig.n_layers=0 must be a positive int.",
        ),
        (lambda: DTConfig(**TINY, seed=-1), "DTConfig.seed=-1 must be an int >= 0 or None."),
        (
            lambda: TrainConfig(model=TINY, lr=-1.0),
            "TrainConfig.lr=-1.0 must be a finite number > 0.",
        ),
        (
            lambda: TrainConfig(model=TINY, val_fraction=1.0),
            r"TrainConfig.val_fraction=1.0 must be a number in \[0, 1\).",
        ),
        (
            lambda: TrainConfig(model=TINY, logger="mlflow"),
            r"TrainConfig.logger='mlflow' is not supported; use one of \(None, 'wandb'",
        ),
        (
            lambda: TrainConfig(model=TINY, device="gpu7"),
            "TrainConfig.device='gpu7' must be a device",
        ),
        (
            lambda: PPOConfig(gamma=1.5),
            r"PPOConfig.gamma=1.5 must be a number in \[0, 1\].",
        ),
        (lambda: PPOConfig(anneal_lr=1), "PPOConfig.anneal_lr=1 must be True or False."),
        (
            lambda: LSTMAgentConfig(view_size=9),
            "LSTMAgentConfig.view_size=9 must be 7.",
        ),
        (
            lambda: ReportConfig(random_walks=0),
            "ReportConfig.random_walks=0 must be a positive int.",
        ),
        (lambda: ReportConfig(rtgs=()), "ReportConfig.rtgs is empty"),
        (
            lambda: CurriculumPhase(until_step=1, replay=1.0),
            r"CurriculumPhase.replay=1.0 must be a number in \[0, 1\).",
        ),
    ],
)
def test_errors_name_class_field_value_and_rule(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_later_fields_stay_out_of_saved_grid_configs():
    """DTConfig's token_embedding/action_tanh are omitted at their defaults."""
    grid = DTConfig(**TINY).to_dict()
    assert "token_embedding" not in grid and "action_tanh" not in grid
    hf = DTConfig(**{**TINY, "n_ctx": 5}, obs_shape=(11,), token_embedding="huggingface")
    assert hf.to_dict()["token_embedding"] == "huggingface"


def test_cpu_device_strings_need_no_torch():
    """Constructing a TrainConfig with a plain device string imports no torch."""
    import subprocess
    import sys

    code = (
        "import sys; from dtlens.training.config import TrainConfig; "
        "TrainConfig(model=dict(n_layers=1, d_model=8, n_heads=1, d_mlp=8, n_ctx=5), "
        "device='cuda:1'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
