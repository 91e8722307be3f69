"""``from_minari``: read a local Minari dataset (dtlens' or any MiniGrid one) as
demonstrations; ``load_demonstrations``: a ``.npz`` file or ``"minari:ID"``.

What is accepted is described in :mod:`dtlens.data.minari_bridge`.

Example:
    >>> demos = from_minari("dtlens/memory-planner-v0")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Int, UInt8

from dtlens.data.demonstrations import Demonstrations
from dtlens.data.minari_bridge.common import (
    _FORMAT,
    _TIMESTEP_INFO,
    METADATA_KEY,
    MINARI_PREFIX,
    MinariDatasetError,
    MinariSpaceError,
    UnknownMinariDatasetError,
    _check_dataset_id,
    _import_minari,
    minari_datasets_path,
)
from dtlens.env import N_ACTIONS, decode_observation
from dtlens.errors import BatchError, ConfigError, ObservationError

if TYPE_CHECKING:  # pragma: no cover
    from minari import MinariDataset

__all__ = ["from_minari", "load_demonstrations"]


def from_minari(
    dataset: MinariDataset | str | os.PathLike,
    *,
    datasets_path: str | os.PathLike | None = None,
) -> Demonstrations:
    """Read a local Minari dataset as :class:`Demonstrations` (never downloads).

    A dataset dtlens wrote comes back exactly: every array and the header (a subset,
    e.g. from ``minari.split_dataset``, gets a header naming its episodes). Any other
    MiniGrid dataset with discrete actions is read too (what is accepted is listed in
    :mod:`dtlens.data.minari_bridge`). Its header gets the env id and ``max_steps`` of
    its env spec, and one part naming the source: dataset id, Minari version,
    ``algorithm_name`` as the agent, and the episode seeds when all have one. Episodes
    without steps are skipped and listed there; timesteps count from 0 unless the
    episodes record a ``"timestep"`` info.

    Args:
        dataset: A ``minari.MinariDataset``, a dataset id (looked up under
            ``datasets_path``), or a path to a dataset folder (``ROOT/ID`` or its
            ``data`` folder).
        datasets_path: Folder of local Minari datasets (default:
            ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``).

    Raises:
        UnknownMinariDatasetError: No such local dataset (the message lists those there).
        MinariSpaceError: Continuous (or more than 7) actions, or observations that are
            not MiniGrid's 7x7 view.
        MinariDatasetError: An unreadable dataset, or episodes that break the rules
            of ``Demonstrations`` (e.g. a termination before the last step).
        MinariNotInstalledError: Without ``pip install "dtlens[minari]"``.

    Examples:
        >>> import tempfile
        >>> from_minari("D4RL/door/human-v2", datasets_path=tempfile.mkdtemp())
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.data.minari_bridge.common.UnknownMinariDatasetError: no local Minari dataset ...
    """
    minari = _import_minari()
    data = _open_dataset(minari, dataset, datasets_path)
    name = f"Minari dataset {data.id!r}"
    image_key, encoding = _observation_layout(data.observation_space, name)
    _check_action_space(data.action_space, name)
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "ts")}
    terminated, truncated, lengths, skipped = [], [], [], []
    for episode in _episodes(data, name):
        n = len(episode.rewards)
        if n == 0:
            skipped.append(int(episode.id))
            continue
        where = f"episode {episode.id} of {name}"
        observations = episode.observations
        if image_key is not None:
            observations = observations[image_key]
        arrays["obs"].append(_images(observations, encoding, n, where))
        arrays["actions"].append(_actions(episode.actions, n, where))
        arrays["rewards"].append(_numbers(episode.rewards, n, where, "rewards", np.float32))
        arrays["ts"].append(_timesteps(episode.infos, n, where))
        for flags, out in ((episode.terminations, terminated), (episode.truncations, truncated)):
            out.append(_end_flag(flags, n, where))
        lengths.append(n)
    header = _header(data, skipped, len(lengths))
    if not lengths:
        return Demonstrations.empty(header)
    try:
        return Demonstrations(
            obs=np.concatenate(arrays["obs"]),
            actions=np.concatenate(arrays["actions"]),
            rewards=np.concatenate(arrays["rewards"]),
            timesteps=np.concatenate(arrays["ts"]),
            episode_starts=np.cumsum([0, *lengths[:-1]]).astype(np.int64),
            terminated=np.array(terminated, dtype=bool),
            truncated=np.array(truncated, dtype=bool),
            header=header,
        )
    except (BatchError, ConfigError) as err:
        raise MinariDatasetError(f"{name} is not valid as demonstrations: {err}") from err


def load_demonstrations(
    source: str | os.PathLike, *, datasets_path: str | os.PathLike | None = None
) -> Demonstrations:
    """Demonstrations from a ``.npz`` file, or from a local Minari dataset written
    ``"minari:ID"`` (what ``dtlens train --demos`` would pass).

    Examples:
        >>> import tempfile, pathlib
        >>> path = Demonstrations.empty({"env_id": "x"}).save(
        ...     pathlib.Path(tempfile.mkdtemp()) / "d.npz")
        >>> load_demonstrations(path).header["env_id"]
        'x'
        >>> load_demonstrations("minari:dtlens/none-v0", datasets_path=tempfile.mkdtemp())
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.data.minari_bridge.common.UnknownMinariDatasetError: no local Minari dataset ...
    """
    text = os.fspath(source)
    if isinstance(text, str) and text.startswith(MINARI_PREFIX):
        return from_minari(text[len(MINARI_PREFIX) :], datasets_path=datasets_path)
    return Demonstrations.load(source)


def _open_dataset(
    minari: Any, dataset: object, datasets_path: str | os.PathLike | None
) -> MinariDataset:
    if isinstance(dataset, minari.MinariDataset):
        return dataset
    if isinstance(dataset, str):
        root = minari_datasets_path(datasets_path)
        folder = root / _check_dataset_id(dataset) / "data"
        if not (folder / "metadata.json").is_file():
            local = _local_dataset_ids(root)
            raise UnknownMinariDatasetError(
                f"no local Minari dataset {dataset!r} in {root} (local datasets: "
                f"{', '.join(local[:20]) or 'none'}{', ...' if len(local) > 20 else ''}). "
                "dtlens never downloads: fetch a public dataset first (`minari download "
                "ID`), or point datasets_path / $MINARI_DATASETS_PATH at the folder holding it"
            )
    elif isinstance(dataset, os.PathLike):
        folder = Path(dataset)
        folder = folder / "data" if (folder / "data" / "metadata.json").is_file() else folder
        if not (folder / "metadata.json").is_file():
            raise UnknownMinariDatasetError(
                f"{Path(dataset)} is not a Minari dataset folder (no data/metadata.json); "
                "pass the folder ROOT/DATASET_ID that minari writes, or a dataset id"
            )
    else:
        raise ConfigError(
            "from_minari needs a minari.MinariDataset, a dataset id or a dataset folder, "
            f"got {type(dataset).__name__}"
        )
    try:
        return minari.MinariDataset(folder)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        raise MinariDatasetError(f"cannot open the Minari dataset at {folder}: {err}") from err


def _episodes(data: MinariDataset, name: str) -> Any:
    """The dataset's episodes, one at a time; a damaged file raises MinariDatasetError."""
    iterator = iter(data.iterate_episodes())
    while True:
        try:
            episode = next(iterator)
        except StopIteration:
            return
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            raise MinariDatasetError(f"cannot read the episodes of {name}: {err}") from err
        yield episode


def _local_dataset_ids(root: Path) -> list[str]:
    """Ids of the datasets under ``root`` (folders holding ``data/``, as Minari lists)."""
    found: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        if (folder / "data").is_dir():
            found.append(prefix)
            return
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            if child.is_dir() and not child.name.startswith("."):
                walk(child, f"{prefix}/{child.name}" if prefix else child.name)

    walk(root, "")
    return [i for i in found if i]


def _observation_layout(space: Any, name: str) -> tuple[str | None, str]:
    """(``"image"`` for a Dict space / None for a Box, ``"index"`` or ``"onehot"``)."""
    import gymnasium as gym

    key, inner = None, space
    if isinstance(space, gym.spaces.Dict) and "image" in space.spaces:
        key, inner = "image", space["image"]
    if isinstance(inner, gym.spaces.Box):
        shape, dtype = tuple(inner.shape), np.dtype(inner.dtype)
        if shape == (7, 7, 3) and np.issubdtype(dtype, np.integer):
            return key, "index"
        if shape == (7, 7, 20):
            return key, "onehot"
    raise MinariSpaceError(
        f"{name} has observation space {space}; dtlens reads MiniGrid's 7x7 partial view: "
        "a Box (7, 7, 3) of integer indices (MiniGrid's obs['image'], ImgObsWrapper), a "
        "Box (7, 7, 20) one-hot (OneHotPartialObsWrapper), or a Dict holding one of them "
        "under 'image'"
    )


def _check_action_space(space: Any, name: str) -> None:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete) and int(space.start) == 0 and space.n <= N_ACTIONS:
        return
    kind = "continuous actions " if isinstance(space, gym.spaces.Box) else ""
    raise MinariSpaceError(
        f"{name} has {kind}action space {space}; dtlens trains on MiniGrid's discrete "
        f"actions, Discrete({N_ACTIONS}) (0 left ... 6 done), or a Discrete(n <= "
        f"{N_ACTIONS}) starting at 0"
    )


def _images(values: Any, encoding: str, n: int, where: str) -> UInt8[np.ndarray, "step 7 7 3"]:
    values = np.asarray(values)
    if values.shape[0] != n + 1:
        raise MinariDatasetError(
            f"{where} has {values.shape[0]} observations for {n} actions (Minari stores "
            "one more observation than actions)"
        )
    values = values[:n]
    if encoding == "onehot":
        try:
            return decode_observation(values).astype(np.uint8)
        except ObservationError as err:
            raise MinariDatasetError(f"{where}: a one-hot observation is invalid: {err}") from err
    if values.size and (values.min() < 0 or values.max() > 255):
        raise MinariDatasetError(
            f"{where}: observation indices range {values.min()}..{values.max()}; MiniGrid's "
            "index images hold object 0..10, colour 0..5, state 0..2"
        )
    return values.astype(np.uint8)


def _actions(values: Any, n: int, where: str) -> Int[np.ndarray, " step"]:
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise MinariSpaceError(f"{where}: actions are {values.dtype}, not discrete actions")
    return _numbers(values, n, where, "actions", np.int64)


def _numbers(values: Any, n: int, where: str, what: str, dtype: type) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.number):
        raise MinariDatasetError(
            f"{where}: {what} must be {n} numbers, got {values.dtype} {list(values.shape)}"
        )
    return values.astype(dtype)


def _timesteps(infos: Any, n: int, where: str) -> Int[np.ndarray, " step"]:
    recorded = infos.get(_TIMESTEP_INFO) if isinstance(infos, dict) else None
    if recorded is None:
        return np.arange(n, dtype=np.int64)
    return _numbers(np.asarray(recorded).reshape(-1)[:n], n, where, "timestep infos", np.int64)


def _end_flag(flags: Any, n: int, where: str) -> bool:
    flags = np.asarray(flags, dtype=bool).reshape(-1)
    if flags.shape != (n,):
        raise MinariDatasetError(f"{where}: {flags.shape[0]} end flags for {n} steps")
    if flags[:-1].any():
        raise MinariDatasetError(
            f"{where} ends (terminates or truncates) at step {int(np.argmax(flags))} before "
            f"its last step {n - 1}; an episode ends at its first termination or truncation"
        )
    return bool(flags[-1])


def _header(data: MinariDataset, skipped: list[int], n_episodes: int) -> dict[str, Any]:
    metadata = data.storage.metadata
    own = metadata.get(METADATA_KEY)
    own_header = own.get("header") if isinstance(own, dict) else None
    if not (isinstance(own, dict) and own.get("format") == _FORMAT):
        own_header = None
    whole = np.array_equal(data.episode_indices, np.arange(data.storage.total_episodes))
    if isinstance(own_header, dict) and whole and not skipped:
        return own_header
    header: dict[str, Any] = {}
    spec = data.env_spec
    if isinstance(own_header, dict):
        header.update({k: own_header[k] for k in ("env_id", "max_steps") if k in own_header})
    elif spec is not None:
        header["env_id"] = spec.id
        max_steps = spec.kwargs.get("max_steps", spec.max_episode_steps)
        if max_steps is not None:
            header["max_steps"] = int(max_steps)
    part: dict[str, Any] = {
        "agent": str(metadata.get("algorithm_name", "unknown")),
        "source": "minari",
        "dataset_id": data.id,
        "minari_version": data.minari_version,
        "n_episodes": n_episodes,
    }
    if not whole:
        part["episode_indices"] = data.episode_indices.tolist()
    if skipped:
        part["skipped_empty_episodes"] = skipped
    seeds = [m.get("seed") for m in data.storage.get_episode_metadata(data.episode_indices)]
    if seeds and all(isinstance(s, int) for s in seeds) and not skipped:
        part["episode_seeds"] = seeds
    header["parts"] = [*own_header.get("parts", []), part] if own_header else [part]
    return header
