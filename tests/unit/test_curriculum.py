"""Curricula: phases served per step (also after resume), replayed shares, group selection,
validation and JSON, against hand-written expectations."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from dtlens.data.curriculum import Curriculum, Mixture
from dtlens.data.demonstrations import Demonstrations
from dtlens.data.windows import WindowSampler
from dtlens.errors import ConfigError
from dtlens.training.config import TrainConfig
from dtlens.training.pipeline import make_samplers
from dtlens.training.trainer import Trainer
from tests.unit.trainer_data import _config, scripted_demos


@pytest.fixture(scope="module")
def demos():
    return scripted_demos()


# --------------------------------------------------------------- curriculum
class _Recording:
    """A window source that records the steps it served (the trainer's step counter)."""

    def __init__(self, inner, log, name):
        self.inner, self.log, self.name = inner, log, name

    def sample(self, batch_size, generator):
        self.log.append(self.name)
        return self.inner.sample(batch_size, generator)


def test_curriculum_phases_serve_their_steps_and_resume_in_phase(demos, tmp_path):
    log: list[str] = []
    inner = WindowSampler(demos, n_steps=6)
    source = Curriculum(
        [(2, _Recording(inner, log, "a")), (5, _Recording(inner, log, "b"))],
        then=_Recording(inner, log, "c"),
    )
    cfg = _config(
        total_steps=7,
        warmup_steps=1,
        batch_size=4,
        checkpoint_every=3,
        run_dir=str(tmp_path / "run"),
    )
    Trainer(cfg, source).train(show_progress=False)
    assert log == ["a", "a", "b", "b", "b", "c", "c"]
    log.clear()
    resumed = Trainer.resume(tmp_path / "run" / "step_3", source)
    resumed.train(show_progress=False)
    assert log == ["b", "b", "c", "c"]


class _Sized:
    """A window source recording the batch sizes asked of it."""

    def __init__(self, inner, log, name):
        self.inner, self.log, self.name = inner, log, name

    def sample(self, batch_size, generator):
        self.log.append((self.name, batch_size))
        return self.inner.sample(batch_size, generator)


def test_replayed_phase_keeps_its_share_of_every_later_batch(demos):
    log: list[tuple[str, int]] = []
    inner = WindowSampler(demos, n_steps=6)
    source = Curriculum(
        [(2, _Sized(inner, log, "a"))], then=_Sized(inner, log, "main"), replay=[0.25]
    )
    cfg = _config(total_steps=4, warmup_steps=1, batch_size=8)
    Trainer(cfg, source).train(show_progress=False)
    assert log == [("a", 8), ("a", 8), ("a", 2), ("main", 6), ("a", 2), ("main", 6)]


def test_mixture_concatenates_its_parts_in_order(demos):
    first = WindowSampler(demos, n_steps=6, episode_indices=np.array([0]), end_fraction=1.0)
    rest = WindowSampler(demos, n_steps=6, episode_indices=np.array([1]), end_fraction=1.0)
    windows = Mixture([(0.25, first)], main=rest).sample(8, torch.Generator().manual_seed(0))
    last = demos.episode_starts[:2] + demos.episode_lengths[:2] - 1
    expected = np.repeat(demos.actions[last], [2, 6])
    np.testing.assert_array_equal(windows.targets[:, -1].numpy(), expected)
    assert windows.batch.obs.shape[0] == 8 and windows.loss_mask.shape == (8, 6)
    with pytest.raises(ConfigError, match="sum to <= 1"):
        Mixture([(0.7, first), (0.5, first)], main=rest)


def test_curriculum_config_builds_phase_samplers_over_the_group(demos):
    demos_with_groups = _with_groups(demos, {"temperature=1": 4, "temperature=5": 6})
    cfg = _config(
        total_steps=10,
        warmup_steps=1,
        val_fraction=0.2,
        curriculum=[{"until_step": 3, "groups": ["temperature=1"], "window_end_fraction": 1.0}],
        window_end_fraction=0.25,
    )
    train, val = make_samplers(demos_with_groups, cfg)
    phase = train.at(0)
    main = train.at(3)
    assert train.at(2) is phase and train.at(9) is main
    expected = np.intersect1d(main.episode_indices, np.arange(4))
    np.testing.assert_array_equal(phase.episode_indices, expected)
    assert phase.end_fraction == 1.0 and main.end_fraction == 0.25
    assert not set(val.episode_indices) & set(main.episode_indices)
    # a window of the phase always ends at its episode's last step
    windows = phase.sample(16, torch.Generator().manual_seed(0))
    lengths = demos.episode_lengths[:4]
    real = windows.loss_mask.sum(1)
    assert set(real.tolist()) <= set(np.minimum(lengths, 6).tolist())
    replayed = dataclasses.replace(
        cfg, curriculum=[dataclasses.replace(cfg.curriculum[0], replay=0.25)]
    )
    train, _ = make_samplers(demos_with_groups, replayed)
    later = train.at(3)
    assert isinstance(later, Mixture) and later.parts[0] == (0.25, train.at(0))
    assert later.main.episode_indices.tolist() == main.episode_indices.tolist()


def test_curriculum_with_an_unknown_group_names_the_groups(demos):
    demos_with_groups = _with_groups(demos, {"temperature=1": 4, "temperature=5": 6})
    cfg = _config(
        total_steps=10, warmup_steps=1, curriculum=[{"until_step": 3, "groups": ["temperature=2"]}]
    )
    with pytest.raises(ConfigError, match=r"temperature=2.*part0/temperature=1"):
        make_samplers(demos_with_groups, cfg)


@pytest.mark.parametrize(
    ("curriculum", "needle"),
    [
        ([{"until_step": 0}], "until_step"),
        ([{"until_step": 5}, {"until_step": 5}], "must rise"),
        ([{"until_step": 500}], "after total_steps"),
        ([{"until_step": 5, "groups": []}], "groups"),
        ([{"until_step": 5, "window_end_fraction": 1.5}], "window_end_fraction"),
        ([{"until_step": 5, "bogus": 1}], "bogus"),
        ([{"until_step": 5, "replay": 1.0}], "replay"),
        ([{"until_step": 5, "replay": 0.6}, {"until_step": 6, "replay": 0.5}], "sum to 1.1"),
        ({"until_step": 5}, "list of phases"),
    ],
)
def test_curriculum_validation(curriculum, needle):
    with pytest.raises(ConfigError, match=needle):
        _config(curriculum=curriculum)


def test_curriculum_and_cycles_round_trip_through_json():
    cfg = _config(
        lr_cycles=3, curriculum=[{"until_step": 50, "groups": ["temperature=1"], "replay": 0.2}]
    )
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.curriculum[0].groups == ("temperature=1",)


def _with_groups(demos: Demonstrations, sizes: dict[str, int]) -> Demonstrations:
    """The same episodes with a header that records sampling groups of these sizes."""
    sampling = [{"label": k, "n_episodes": n} for k, n in sizes.items()]
    header = {**demos.header, "parts": [{"sampling": sampling}]}
    return dataclasses.replace(demos, header=header)
