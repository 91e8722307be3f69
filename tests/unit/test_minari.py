"""Tests of the Minari bridge: dtlens -> Minari -> dtlens is exact, training from a Minari
dataset equals training on the demonstrations, foreign and bad datasets, atomic export.

Every dataset lives in a test's own temporary folder: nothing is downloaded and
``~/.minari`` is never touched.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("minari", reason='Minari is optional: pip install "dtlens[minari]"')
pytest.importorskip("PIL", reason='Minari needs pillow: pip install "dtlens[minari]"')

import gymnasium as gym
import minari
from minari.data_collector import EpisodeBuffer

from dtlens.data.demonstrations import Demonstrations
from dtlens.data.minari_bridge import (
    INSTALL_HINT,
    MinariDatasetError,
    MinariNotInstalledError,
    MinariSpaceError,
    UnknownMinariDatasetError,
    from_minari,
    load_demonstrations,
    to_minari,
)
from dtlens.data.windows import WindowSampler
from dtlens.env import MEMORY_ENV_ID, encode_observation, make_env
from dtlens.errors import ConfigError, DTLensError, OutputPathError
from dtlens.training.pipeline import train_on_demonstrations
from tests.conftest import planner_demos
from tests.unit.trainer_data import _config

pytestmark = pytest.mark.usefixtures("one_thread")

FIELDS = ("obs", "actions", "rewards", "timesteps", "episode_starts", "terminated", "truncated")


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return planner_demos("1:30")


def assert_same(a: Demonstrations, b: Demonstrations) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y), name
    assert a.header == b.header
    assert np.array_equal(a.rtg, b.rtg)


def assert_same_windows(a: Demonstrations, b: Demonstrations) -> None:
    """The training windows (inputs, RTG labels, targets, masks) built from both are equal."""
    sa, sb = WindowSampler(a, n_steps=6), WindowSampler(b, n_steps=6)
    pairs = list(zip(sa.iterate(batch_size=97), sb.iterate(batch_size=97), strict=True))
    draws = [
        (
            sa.sample(64, torch.Generator().manual_seed(k)),
            sb.sample(64, torch.Generator().manual_seed(k)),
        )
        for k in range(3)
    ]
    for wa, wb in pairs + draws:
        for field in ("obs", "actions", "rtg", "timesteps", "padding_mask"):
            assert torch.equal(getattr(wa.batch, field), getattr(wb.batch, field)), field
        assert torch.equal(wa.targets, wb.targets) and torch.equal(wa.loss_mask, wb.loss_mask)


def make_foreign(root, monkeypatch, dataset_id, observation_space, action_space, episodes, **kw):
    """A dataset written by Minari's own API (as another tool would), under ``root``."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    with pytest.warns(UserWarning):  # Minari warns about every metadata field left out
        return minari.create_dataset_from_buffers(
            dataset_id,
            episodes,
            observation_space=observation_space,
            action_space=action_space,
            data_format="arrow",
            jpeg_encoding=False,
            **kw,
        )


def episode(observations, actions, terminated=True, **kw) -> EpisodeBuffer:
    n = len(actions)
    flags = np.zeros(n, dtype=bool)
    flags[-1] = terminated
    return EpisodeBuffer(
        observations=observations,
        actions=np.asarray(actions),
        rewards=np.linspace(0, 1, n).astype(np.float64),
        terminations=flags,
        truncations=np.zeros(n, dtype=bool),
        **kw,
    )


# ------------------------------------------------------------------- round trip
def test_round_trip_is_exact_field_by_field(demos, tmp_path):
    assert demos.n_episodes == 30 and demos.terminated.any()
    dataset = to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    assert (dataset.total_episodes, dataset.total_steps) == (demos.n_episodes, demos.n_steps)
    back = from_minari("dtlens/memory-planner-v0", datasets_path=tmp_path)
    assert_same(demos, back)
    assert_same_windows(demos, back)
    # the opened dataset, its folder and a second export -> import are the same again
    assert_same(demos, from_minari(dataset))
    assert_same(demos, from_minari(tmp_path / "dtlens" / "memory-planner-v0"))
    to_minari(back, "dtlens/again-v0", datasets_path=tmp_path)
    assert_same(demos, from_minari("dtlens/again-v0", datasets_path=tmp_path))


def test_round_trip_keeps_odd_timesteps_end_flags_and_an_empty_set(tmp_path):
    rng = np.random.default_rng(0)
    odd = Demonstrations(
        obs=rng.integers(0, (11, 6, 3), size=(6, 7, 7, 3)).astype(np.uint8),
        actions=np.array([0, 6, 2, 3, 4, 5]),
        rewards=np.array([0.0, 0.25, -1.0, 0.0, 0.5, 1e-7], dtype=np.float32),
        timesteps=np.array([3, 4, 5, 0, 1, 7]),  # an episode cut mid-way; one of 1 step
        episode_starts=np.array([0, 3, 5]),
        terminated=np.array([False, True, False]),
        truncated=np.array([False, True, True]),  # incomplete, both, truncated
        header={"env_id": "MiniGrid-DoorKey-6x6-v0", "note": [1, 2.5, None]},
    )
    to_minari(odd, "odd-v3", datasets_path=tmp_path)
    assert_same(odd, from_minari("odd-v3", datasets_path=tmp_path))
    empty = Demonstrations.empty({"env_id": MEMORY_ENV_ID, "max_steps": 50})
    to_minari(empty, "empty-v0", datasets_path=tmp_path)
    assert_same(empty, from_minari("empty-v0", datasets_path=tmp_path))


def test_the_export_is_an_ordinary_minari_dataset(demos, tmp_path, monkeypatch):
    to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path, author="A. Tester")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert "dtlens/memory-planner-v0" in minari.list_local_datasets()
    dataset = minari.load_dataset("dtlens/memory-planner-v0")
    assert dataset.action_space == gym.spaces.Discrete(7)
    assert dataset.observation_space == gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    assert dataset.env_spec.id == MEMORY_ENV_ID and dataset.env_spec.kwargs["max_steps"] == 50
    assert dataset.storage.metadata["author"] == {"A. Tester"}
    assert dataset.storage.metadata["algorithm_name"] == "BoltzmannPlanner"
    assert dataset.storage.metadata["dataset_size"] > 0
    env = dataset.recover_environment()  # offline: the entry point is dtlens' own
    seeds = [m["seed"] for m in dataset.storage.get_episode_metadata(range(demos.n_episodes))]
    for i, ep in enumerate(dataset.iterate_episodes()):
        s = demos.episode_slice(i)
        assert ep.observations.shape == (len(ep) + 1, 7, 7, 3)
        assert ep.observations.dtype == np.uint8 and not ep.observations[-1].any()
        assert np.array_equal(ep.observations[:-1], demos.obs[s])
        assert np.array_equal(ep.actions, demos.actions[s])
        assert ep.terminations[-1] == demos.terminated[i] and not ep.terminations[:-1].any()
        assert ep.truncations[-1] == demos.truncated[i] and not ep.truncations[:-1].any()
        if i < 3:  # the recorded seed reproduces the episode's layout
            assert np.array_equal(env.reset(seed=seeds[i])[0]["image"], demos.obs[s.start])
    env.close()


def test_training_from_minari_equals_training_on_the_demonstrations(demos, tmp_path):
    to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    from_dataset = from_minari("dtlens/memory-planner-v0", datasets_path=tmp_path)
    cfg = _config(total_steps=20, warmup_steps=5, batch_size=16, eval_every=10, val_fraction=0.2)
    runs = [train_on_demonstrations(cfg, d, show_progress=False) for d in (demos, from_dataset)]
    (a, history_a), (b, history_b) = runs
    assert a.step == b.step == 20
    assert [r["train/loss"] for r in history_a.train] == [r["train/loss"] for r in history_b.train]
    assert [r["val/loss"] for r in history_a.val] == [r["val/loss"] for r in history_b.val]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metadata["data"] == b.metadata["data"]


def test_load_demonstrations_reads_npz_files_and_minari_ids(demos, tmp_path):
    to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    from_id = load_demonstrations("minari:dtlens/memory-planner-v0", datasets_path=tmp_path)
    assert_same(demos, from_id)
    assert_same(demos, load_demonstrations(demos.save(tmp_path / "d.npz")))


# ------------------------------------------------------------- foreign datasets
def test_a_minigrid_dataset_with_dict_observations_is_read(tmp_path, monkeypatch):
    env = make_env(MEMORY_ENV_ID, one_hot=False)
    obs_space = gym.spaces.Dict(
        {"image": env.observation_space["image"], "direction": env.observation_space["direction"]}
    )
    rng = np.random.default_rng(1)
    images = [rng.integers(0, (11, 6, 3), size=(n + 1, 7, 7, 3)).astype(np.uint8) for n in (4, 2)]
    buffers = [
        episode(
            {"image": im, "direction": np.zeros(len(im), np.int64)}, [2] * (len(im) - 1), seed=s
        )
        for im, s in zip(images, (11, 12), strict=True)
    ]
    make_foreign(
        tmp_path,
        monkeypatch,
        "minigrid/memory-v0",
        obs_space,
        env.action_space,
        buffers,
        env=env.spec,
        algorithm_name="PPO",
    )
    demos = from_minari("minigrid/memory-v0", datasets_path=tmp_path)
    assert np.array_equal(demos.obs, np.concatenate([images[0][:4], images[1][:2]]))
    assert demos.timesteps.tolist() == [0, 1, 2, 3, 0, 1]
    assert demos.rewards.dtype == np.float32 and demos.terminated.tolist() == [True, True]
    assert demos.header["env_id"] == MEMORY_ENV_ID
    (part,) = demos.header["parts"]
    assert part["agent"] == "PPO" and part["source"] == "minari"
    assert part["episode_seeds"] == [11, 12] and part["dataset_id"] == "minigrid/memory-v0"
    WindowSampler(demos, n_steps=3).sample(4, torch.Generator().manual_seed(0))


def test_one_hot_observations_are_decoded(tmp_path, monkeypatch):
    image = np.random.default_rng(2).integers(0, (11, 6, 3), size=(4, 7, 7, 3)).astype(np.uint8)
    space = gym.spaces.Box(0, 1, (7, 7, 20), np.uint8)
    buffers = [episode(encode_observation(image).astype(np.uint8), [0, 1, 2], terminated=False)]
    make_foreign(tmp_path, monkeypatch, "onehot-v0", space, gym.spaces.Discrete(3), buffers)
    demos = from_minari("onehot-v0", datasets_path=tmp_path)
    assert np.array_equal(demos.obs, image[:3])
    assert demos.terminated.tolist() == demos.truncated.tolist() == [False]


def test_a_subset_of_a_dtlens_dataset_names_its_episodes(demos, tmp_path):
    dataset = to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    subset = minari.MinariDataset(dataset.storage, episode_indices=np.array([2, 5]))
    part = from_minari(subset)
    assert part.n_episodes == 2
    assert np.array_equal(
        part.obs, np.concatenate([demos.obs[demos.episode_slice(i)] for i in (2, 5)])
    )
    assert part.header["env_id"] == MEMORY_ENV_ID
    assert part.header["parts"][-1]["episode_indices"] == [2, 5]


# ----------------------------------------------------------------- bad datasets
def test_continuous_actions_are_refused(tmp_path, monkeypatch):
    image = np.zeros((3, 7, 7, 3), np.uint8)
    buffers = [episode(image, np.zeros((2, 2), np.float32))]
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    make_foreign(
        tmp_path, monkeypatch, "cont-v0", gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), box, buffers
    )
    with pytest.raises(MinariSpaceError, match=r"continuous actions .*Discrete\(7\)"):
        from_minari("cont-v0", datasets_path=tmp_path)


@pytest.mark.parametrize(
    ("space", "observations"),
    [
        (gym.spaces.Box(0, 1, (4,), np.float32), np.zeros((3, 4), np.float32)),
        (gym.spaces.Box(0, 255, (7, 7, 3), np.float32), np.zeros((3, 7, 7, 3), np.float32)),
    ],
)
def test_other_observation_spaces_are_refused(tmp_path, monkeypatch, space, observations):
    make_foreign(
        tmp_path,
        monkeypatch,
        "obs-v0",
        space,
        gym.spaces.Discrete(7),
        [episode(observations, [1, 2])],
    )
    with pytest.raises(MinariSpaceError, match=r"observation space .*7x7 partial view"):
        from_minari("obs-v0", datasets_path=tmp_path)


def test_too_many_actions_and_bad_episodes_are_refused(tmp_path, monkeypatch):
    image = np.zeros((3, 7, 7, 3), np.uint8)
    space = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    make_foreign(
        tmp_path, monkeypatch, "many-v0", space, gym.spaces.Discrete(9), [episode(image, [1, 8])]
    )
    with pytest.raises(MinariSpaceError, match=r"Discrete\(9\)"):
        from_minari("many-v0", datasets_path=tmp_path)
    early = episode(image, [1, 2])
    early.terminations[:] = True
    make_foreign(tmp_path, monkeypatch, "early-v0", space, gym.spaces.Discrete(7), [early])
    with pytest.raises(MinariDatasetError, match=r"episode 0 .* step 0 before its last step 1"):
        from_minari("early-v0", datasets_path=tmp_path)
    wrong = image.copy()
    wrong[0, 0, 0, 0] = 200  # object index 200 is no MiniGrid object
    make_foreign(
        tmp_path, monkeypatch, "range-v0", space, gym.spaces.Discrete(7), [episode(wrong, [1, 2])]
    )
    with pytest.raises(MinariDatasetError, match=r"not valid as demonstrations: obs\[\.\.\., 0\]"):
        from_minari("range-v0", datasets_path=tmp_path)


def test_unknown_datasets_and_ids_are_named_errors(demos, tmp_path):
    to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    with pytest.raises(
        UnknownMinariDatasetError,
        match=r"'D4RL/door/human-v2' .*local datasets: "
        r"dtlens/memory-planner-v0\). dtlens never downloads",
    ) as info:
        from_minari("D4RL/door/human-v2", datasets_path=tmp_path)
    assert isinstance(info.value, KeyError) and isinstance(info.value, DTLensError)
    with pytest.raises(UnknownMinariDatasetError, match="not a Minari dataset folder"):
        from_minari(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="bad Minari dataset id 'no-version'"):
        from_minari("no-version", datasets_path=tmp_path)
    with pytest.raises(ConfigError, match=r"bad Minari dataset id '\.\./up-v0'"):
        to_minari(demos, "../up-v0", datasets_path=tmp_path)


def test_missing_minari_says_how_to_install_it(demos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)  # `import minari` now fails
    for call in (
        lambda: to_minari(demos, "x-v0", datasets_path=tmp_path),
        lambda: from_minari("x-v0", datasets_path=tmp_path),
    ):
        with pytest.raises(MinariNotInstalledError, match=re.escape(INSTALL_HINT)) as info:
            call()
        assert isinstance(info.value, ImportError)
    assert INSTALL_HINT == 'pip install "dtlens[minari]"'
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------- atomic export
def test_an_existing_dataset_is_replaced_only_with_overwrite(demos, tmp_path):
    to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    with pytest.raises(OutputPathError, match=r"already exists .*overwrite=True"):
        to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path)
    end = demos.episode_ends[1]
    smaller = Demonstrations(
        **{name: getattr(demos, name)[:end] for name in ("obs", "actions", "rewards", "timesteps")},
        episode_starts=demos.episode_starts[:2],
        terminated=demos.terminated[:2],
        truncated=demos.truncated[:2],
        header={"env_id": MEMORY_ENV_ID},
    )
    to_minari(smaller, "dtlens/memory-planner-v0", datasets_path=tmp_path, overwrite=True)
    assert_same(smaller, from_minari("dtlens/memory-planner-v0", datasets_path=tmp_path))
    (tmp_path / "plain-v0").mkdir()
    with pytest.raises(OutputPathError, match="not a Minari dataset"):
        to_minari(demos, "plain-v0", datasets_path=tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dtlens", "plain-v0"]


def test_an_export_failing_half_way_leaves_no_partial_dataset(demos, tmp_path, monkeypatch):
    import pyarrow.dataset

    to_minari(demos, "dtlens/old-v0", datasets_path=tmp_path)
    real, calls = pyarrow.dataset.write_dataset, []

    def fail_on_the_fifth_episode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(pyarrow.dataset, "write_dataset", fail_on_the_fifth_episode)
    with pytest.raises(OSError, match="No space left"):
        to_minari(demos, "dtlens/new-v0", datasets_path=tmp_path)
    calls.clear()
    with pytest.raises(OSError, match="No space left"):
        to_minari(demos, "dtlens/old-v0", datasets_path=tmp_path, overwrite=True)
    # no new dataset, no temporary folder, and the old dataset is whole and unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dtlens"]
    assert sorted(p.name for p in (tmp_path / "dtlens").iterdir()) == [
        "namespace_metadata.json",
        "old-v0",
    ]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert list(minari.list_local_datasets()) == ["dtlens/old-v0"]
    assert_same(demos, from_minari("dtlens/old-v0", datasets_path=tmp_path))


def test_dtlens_train_reads_a_minari_dataset(demos, tmp_path, monkeypatch):
    """``dtlens train --demos minari:ID`` trains on the local dataset and names it as its data."""
    import json

    from dtlens.cli import main

    to_minari(demos, "dtlens/memory-planner-v0", datasets_path=tmp_path / "datasets")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    flags = ["--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--d-mlp", "16",
             "--batch-size", "8", "--warmup-steps", "1", "--total-steps", "3",
             "--device", "cpu", "--no-progress"]  # fmt: skip
    run_dir = tmp_path / "run"
    argv = ["train", "--demos", "minari:dtlens/memory-planner-v0", "--run-dir", str(run_dir)]
    assert main([*argv, *flags]) == 0
    states = sorted(run_dir.glob("step_*/trainer_state.json"))
    assert states and "minari:dtlens/memory-planner-v0" in json.dumps(
        json.loads(states[-1].read_text())
    )
