"""``to_minari``: write demonstrations as a local Minari dataset, atomically.

The layout is described in :mod:`dtlens.data.minari_bridge`.

Example:
    >>> dataset = to_minari(demos, "dtlens/memory-planner-v0")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Bool

from dtlens.data.demonstrations import Demonstrations
from dtlens.data.minari_bridge.common import (
    _DATA_FORMAT,
    _FORMAT,
    _FORMAT_VERSION,
    _TIMESTEP_INFO,
    METADATA_KEY,
    _check_dataset_id,
    _import_minari,
    minari_datasets_path,
)
from dtlens.env import N_ACTIONS
from dtlens.errors import ConfigError, OutputPathError
from dtlens.files import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from minari import MinariDataset

__all__ = ["to_minari"]


def to_minari(
    demos: Demonstrations,
    dataset_id: str,
    *,
    datasets_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
) -> MinariDataset:
    """Write ``demos`` as the local Minari dataset ``dataset_id``; returns it opened.

    The layout is described in :mod:`dtlens.data.minari_bridge`.

    The dataset is written completely into a hidden temporary folder beside its
    destination, then renamed into place: a write that fails half-way (disk full,
    Ctrl+C) leaves no partial dataset and, with ``overwrite``, the old one as it was.
    Nothing goes over the network.

    Args:
        demos: The demonstrations.
        dataset_id: ``(NAMESPACE/)NAME-vVERSION``, e.g. ``"dtlens/memory-planner-v0"``.
        datasets_path: Folder of local Minari datasets (default: ``$MINARI_DATASETS_PATH``,
            else ``~/.minari/datasets``); the dataset goes to ``datasets_path/dataset_id``,
            where ``minari.load_dataset(dataset_id)`` finds it.
        overwrite: Replace an existing dataset of that id.
        author: Minari's ``author`` metadata field.
        author_email: Minari's ``author_email``.
        code_permalink: Minari's ``code_permalink``.
        description: Minari's ``description`` (default: one naming the agents, env,
            episodes and steps).

    Raises:
        ConfigError: For a malformed ``dataset_id`` or ``demos`` that are not
            :class:`Demonstrations`.
        OutputPathError: If the dataset exists and ``overwrite`` is False.
        MinariNotInstalledError: Without ``pip install "dtlens[minari]"``.

    Examples:
        >>> import tempfile
        >>> from dtlens.data import Demonstrations
        >>> root = tempfile.mkdtemp()
        >>> _ = to_minari(Demonstrations.empty({"env_id": "MiniGrid-MemoryS7FixedStart-v0"}),
        ...               "empty-v0", datasets_path=root)
        >>> to_minari(Demonstrations.empty(), "empty-v0", datasets_path=root)
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.errors.OutputPathError: a Minari dataset 'empty-v0' already exists at ...
    """
    minari = _import_minari()
    _check_dataset_id(dataset_id)
    if not isinstance(demos, Demonstrations):
        raise ConfigError(
            f"to_minari needs Demonstrations, got {type(demos).__name__}; load a file with "
            "Demonstrations.load(path)"
        )
    root = minari_datasets_path(datasets_path)
    target = root / dataset_id
    if target.exists() and not overwrite:
        raise OutputPathError(
            f"a Minari dataset {dataset_id!r} already exists at {target}; pass "
            "overwrite=True to replace it, or choose another id (e.g. a higher -vVERSION)"
        )
    if target.exists() and not (target / "data" / "metadata.json").is_file():
        raise OutputPathError(
            f"{target} exists but is not a Minari dataset (no data/metadata.json); "
            "overwrite only replaces datasets: choose another id or remove it yourself"
        )
    root.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".dtlens-minari-", dir=root))
    try:
        metadata = _dataset_metadata(minari, demos, dataset_id, description)
        for key, value in (("author", author), ("author_email", author_email)):
            if value is not None:
                metadata[key] = {value}
        if code_permalink is not None:
            metadata["code_permalink"] = code_permalink
        _write_storage(temporary / "data", demos, metadata)
        _make_namespaces(root, dataset_id)
        _move_into_place(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return minari.MinariDataset(target / "data")


def _dataset_metadata(
    minari: Any, demos: Demonstrations, dataset_id: str, description: str | None
) -> dict[str, Any]:
    parts = demos.header.get("parts", [])
    agents = [p.get("agent") for p in parts if isinstance(p, dict) and p.get("agent")]
    agent = ", ".join(dict.fromkeys(map(str, agents))) or "unknown"
    env_id = demos.header.get("env_id", "an unrecorded MiniGrid env")
    try:
        version = importlib.metadata.version("dtlens")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        version = "unknown"
    return {
        "dataset_id": dataset_id,
        "minari_version": minari.__version__,
        "algorithm_name": agent,
        "description": description
        or (
            f"{demos.n_episodes} episodes ({demos.n_steps} steps) of {agent} in {env_id}, "
            "exported by dtlens; observations are MiniGrid's raw 7x7x3 index images (the "
            "view after each episode's last action is not recorded: zeros)"
        ),
        "requirements": ["dtlens", "minigrid"],
        METADATA_KEY: {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "header": demos.header,
            "final_observation": "zeros",
            "dtlens_version": version,
        },
    }


def _write_storage(data_path: Path, demos: Demonstrations, metadata: dict[str, Any]) -> None:
    import gymnasium as gym
    from minari.dataset.minari_storage import MinariStorage

    storage = MinariStorage.new(
        data_path,
        observation_space=gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
        action_space=gym.spaces.Discrete(N_ACTIONS),
        env_spec=_env_spec(demos.header),
        data_format=_DATA_FORMAT,
        jpeg_encoding=False,
    )
    storage.update_metadata(metadata)
    # Minari re-measures the whole dataset after every episode it writes (quadratic:
    # 800 episodes take ~50 s, 24k would take hours); measure once, at the end.
    storage.get_size = lambda: 0.0
    storage.update_episodes(_episode_buffers(demos))
    del storage.get_size
    storage.update_metadata({"dataset_size": storage.get_size()})


def _env_spec(header: dict) -> Any:
    """The gymnasium spec of the header's env (with its ``max_steps``), or None."""
    import gymnasium as gym

    env_id = header.get("env_id")
    if not isinstance(env_id, str) or env_id not in gym.registry:
        return None
    spec = gym.spec(env_id)
    max_steps = header.get("max_steps")
    if isinstance(max_steps, int) and not isinstance(max_steps, bool):
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "max_steps": max_steps})
    return spec


def _episode_buffers(demos: Demonstrations) -> Any:
    from minari.data_collector import EpisodeBuffer

    seeds = _episode_env_seeds(demos)
    final = np.zeros((1, 7, 7, 3), dtype=np.uint8)
    for i in range(demos.n_episodes):
        s = demos.episode_slice(i)
        timesteps = demos.timesteps[s].tolist()
        yield EpisodeBuffer(
            seed=None if seeds is None else seeds[i],
            observations=np.concatenate([demos.obs[s], final]),
            actions=demos.actions[s],
            rewards=demos.rewards[s],
            terminations=_last_step_flag(s.stop - s.start, bool(demos.terminated[i])),
            truncations=_last_step_flag(s.stop - s.start, bool(demos.truncated[i])),
            # a list, not an array: minari 0.5.4's Arrow storage cannot read 1-d arrays back
            infos={_TIMESTEP_INFO: [*timesteps, timesteps[-1] + 1]},
        )


def _last_step_flag(length: int, flag: bool) -> Bool[np.ndarray, " step"]:
    out = np.zeros(length, dtype=bool)
    out[-1] = flag
    return out


def _episode_env_seeds(demos: Demonstrations) -> list[int] | None:
    """Each episode's env seed, if the header's parts say how every episode was collected
    (:func:`~dtlens.data.collect.collect_demonstrations`, appended runs included)."""
    from dtlens.data.collect import _episode_seeds

    parts = demos.header.get("parts")
    if not isinstance(parts, list) or not parts:
        return None
    seeds: list[int] = []
    for part in parts:
        try:
            seed, first = int(part["seed"]), int(part["first_episode"])
            n = sum(int(group["n_episodes"]) for group in part["sampling"])
        except (KeyError, TypeError, ValueError):
            return None
        if first != len(seeds):
            return None  # parts concatenated from separate runs: numbering restarts
        seeds.extend(_episode_seeds(seed, first + j)[0] for j in range(n))
    return seeds if len(seeds) == demos.n_episodes else None


def _make_namespaces(root: Path, dataset_id: str) -> None:
    """Minari's namespace folders (with their metadata file) above the dataset."""
    folder = root
    for name in dataset_id.split("/")[:-1]:
        folder = folder / name
        folder.mkdir(exist_ok=True)
        if not (folder / "namespace_metadata.json").exists():
            write_text_atomic(folder / "namespace_metadata.json", "{}")


def _move_into_place(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is replaced only once the
    rename has succeeded (and restored if it fails)."""
    if not target.exists():
        os.replace(source, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(old / target.name, target)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
