"""`Demonstrations`: recorded episodes in a compact, flat, validated, on-disk format.

All steps of all episodes are stored back to back (episodes contiguous and in order),
with the raw MiniGrid ``[7, 7, 3]`` index image of each step (one-hot encoding is done
on demand by :mod:`dtlens.data.windows`, which keeps a 24k-episode set around 100 MB
in memory and a few MB on disk). Returns-to-go are derived, never stored, so they
cannot disagree with the rewards.

Files are ``.npz`` archives of plain arrays (the header is a JSON string), written and
read with ``allow_pickle=False``: loading a file never runs code.

Examples:
    >>> import numpy as np
    >>> demos = Demonstrations(
    ...     obs=np.zeros((3, 7, 7, 3), dtype=np.uint8),
    ...     actions=np.array([2, 2, 1]),
    ...     rewards=np.array([0.0, 0.5, 0.0], dtype=np.float32),
    ...     timesteps=np.array([0, 1, 0]),
    ...     episode_starts=np.array([0, 2]),
    ...     terminated=np.array([True, False]),
    ...     truncated=np.array([False, True]),
    ...     header={"env_id": "MiniGrid-MemoryS7FixedStart-v0", "max_steps": 50},
    ... )
    >>> demos.n_episodes, demos.episode_lengths.tolist(), demos.rtg.tolist()
    (2, [2, 1], [0.5, 0.5, 0.0])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtlens.data.npz_archive import open_npz, read_npz_array
from dtlens.errors import BatchError, ConfigError, DemonstrationsFileError
from dtlens.files import write_atomic

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Demonstrations", "Episode", "merge_headers"]

FORMAT_NAME = "dtlens.demonstrations"
FORMAT_VERSION = 1

#: field -> (dtype, shape); N = steps, E = episodes
_FIELDS = {
    "obs": (np.uint8, ("N", 7, 7, 3)),
    "actions": (np.int64, ("N",)),
    "rewards": (np.float32, ("N",)),
    "timesteps": (np.int64, ("N",)),
    "episode_starts": (np.int64, ("E",)),
    "terminated": (np.bool_, ("E",)),
    "truncated": (np.bool_, ("E",)),
}
#: (object, colour, state) index ranges of MiniGrid's image
_OBS_LIMITS = (11, 6, 3)
_N_ACTIONS = 7
_SHARED_HEADER_KEYS = ("env_id", "max_steps")


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode's arrays (views into the :class:`Demonstrations`, not copies).

    Attributes:
        obs: uint8 ``[L, 7, 7, 3]`` raw index images.
        actions: int64 ``[L]``.
        rewards: float32 ``[L]``.
        timesteps: int64 ``[L]``.
        rtg: float32 ``[L]`` returns-to-go.
        terminated: whether the episode ended in a terminal state.
        truncated: whether it hit the step limit.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    timesteps: np.ndarray
    rtg: np.ndarray
    terminated: bool
    truncated: bool


@dataclass(frozen=True, eq=False)
class Demonstrations:
    """N steps of E episodes, stored flat (see the module docstring).

    Args:
        obs: uint8 ``[N, 7, 7, 3]`` raw MiniGrid index image of each step.
        actions: int64 ``[N]`` action taken at that step (0..6).
        rewards: float32 ``[N]`` reward received after that action.
        timesteps: int64 ``[N]`` env step index (0-based) of that obs; consecutive
            within an episode.
        episode_starts: int64 ``[E]`` index of each episode's first step; starts at 0,
            strictly increasing (no empty episodes).
        terminated: bool ``[E]``.
        truncated: bool ``[E]``.
        header: JSON-able dict: ``env_id``, ``max_steps`` and ``parts`` (one entry per
            collection run: agent, sampling spec, seed, dtlens version, created).

    Raises:
        BatchError: If a field has the wrong type, dtype, shape or range (the message
            names the field, what it got and what was expected). Arrays are never
            cast silently: pass the documented dtypes.
        ConfigError: If the header is not a JSON-serialisable dict.

    Examples:
        >>> import numpy as np
        >>> d = Demonstrations.empty({"env_id": "MiniGrid-MemoryS7FixedStart-v0"})
        >>> d.n_steps, d.n_episodes
        (0, 0)
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    timesteps: np.ndarray
    episode_starts: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    header: dict

    def __post_init__(self) -> None:
        sizes = {"N": None, "E": None}
        for name, (dtype, shape) in _FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != dtype:
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise BatchError(
                    f"{name} must be a numpy array of {np.dtype(dtype)}, got {got}; "
                    f"convert with np.asarray(..., dtype=np.{np.dtype(dtype).name})"
                )
            if value.shape[1:] != shape[1:] or value.ndim != len(shape):
                raise BatchError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
            expected = sizes[shape[0]]
            if expected is not None and value.shape[0] != expected[1]:
                raise BatchError(
                    f"{name} has {value.shape[0]} entries but {expected[0]} has {expected[1]} "
                    f"(both are per-{'step' if shape[0] == 'N' else 'episode'})"
                )
            sizes[shape[0]] = expected or (name, value.shape[0])
        self._check_ranges(sizes["N"][1])
        if not isinstance(self.header, dict):
            raise ConfigError(f"header must be a dict, got {type(self.header).__name__}")
        try:
            json.dumps(self.header)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"header must be JSON-serialisable: {err}") from err

    def _check_ranges(self, n: int) -> None:
        starts = self.episode_starts
        if (n == 0) != (starts.size == 0):
            raise BatchError(f"episode_starts has {starts.size} episodes for {n} steps")
        if starts.size and (starts[0] != 0 or (np.diff(starts) <= 0).any() or starts[-1] >= n):
            raise BatchError(
                f"episode_starts must start at 0, increase strictly and stay < N={n} "
                f"(no empty episodes), got {str(starts[:8].tolist())[:-1]}...]"
            )
        if n == 0:
            return
        for field, limit in enumerate(_OBS_LIMITS):
            if int(self.obs[..., field].max()) >= limit:
                raise BatchError(
                    f"obs[..., {field}] holds {int(self.obs[..., field].max())}; "
                    f"MiniGrid indices of that field are 0..{limit - 1}"
                )
        if self.actions.min() < 0 or self.actions.max() >= _N_ACTIONS:
            raise BatchError(
                f"actions must be in 0..{_N_ACTIONS - 1}, got values "
                f"{int(self.actions.min())}..{int(self.actions.max())}"
            )
        if not np.isfinite(self.rewards).all():
            raise BatchError("rewards must be finite, found NaN or inf")
        steps_ok = np.diff(self.timesteps) == 1
        steps_ok[starts[1:] - 1] = True  # no constraint across episode boundaries
        if self.timesteps.min() < 0 or not steps_ok.all():
            i = int(np.flatnonzero(~steps_ok)[0]) + 1 if not steps_ok.all() else 0
            raise BatchError(
                "timesteps must be >= 0 and increase by 1 within an episode; got "
                f"{self.timesteps[max(i - 1, 0) : i + 1].tolist()} at steps {max(i - 1, 0)}..{i}"
            )

    # ------------------------------------------------------------------ build
    @staticmethod
    def empty(header: dict | None = None) -> Demonstrations:
        """A set with no episodes (a start for :meth:`append`)."""
        return Demonstrations(
            obs=np.zeros((0, 7, 7, 3), dtype=np.uint8),
            actions=np.zeros(0, dtype=np.int64),
            rewards=np.zeros(0, dtype=np.float32),
            timesteps=np.zeros(0, dtype=np.int64),
            episode_starts=np.zeros(0, dtype=np.int64),
            terminated=np.zeros(0, dtype=bool),
            truncated=np.zeros(0, dtype=bool),
            header=dict(header or {}),
        )

    # ------------------------------------------------------------------ sizes
    @property
    def n_steps(self) -> int:
        """N, the number of steps of all episodes together."""
        return int(self.actions.shape[0])

    @property
    def n_episodes(self) -> int:
        """E, the number of episodes."""
        return int(self.episode_starts.shape[0])

    @property
    def episode_ends(self) -> np.ndarray:
        """int64 ``[E]``: one past each episode's last step."""
        if self.n_episodes == 0:
            return np.zeros(0, dtype=np.int64)
        return np.append(self.episode_starts[1:], self.n_steps).astype(np.int64)

    @property
    def episode_lengths(self) -> np.ndarray:
        """int64 ``[E]``: steps per episode."""
        return self.episode_ends - self.episode_starts

    @property
    def episode_returns(self) -> np.ndarray:
        """float32 ``[E]``: undiscounted sum of each episode's rewards."""
        if self.n_episodes == 0:
            return np.zeros(0, dtype=np.float32)
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts).astype(
            np.float32
        )

    @property
    def rtg(self) -> np.ndarray:
        """float32 ``[N]``: return-to-go, the sum of this step's and later rewards of its
        episode (undiscounted), the label a decision transformer conditions on."""
        rewards = self.rewards.astype(np.float64)
        after = np.cumsum(rewards[::-1])[::-1]  # sum of rewards from i to the very end
        ends = self.episode_ends
        after_episode = np.append(after, 0.0)[ends]  # rewards after each episode
        return (after - np.repeat(after_episode, self.episode_lengths)).astype(np.float32)

    def episode_slice(self, i: int) -> slice:
        """The steps of episode ``i`` (negative indices count from the end)."""
        if not -self.n_episodes <= i < self.n_episodes:
            raise BatchError(f"episode {i} out of range for {self.n_episodes} episodes")
        i %= self.n_episodes
        return slice(int(self.episode_starts[i]), int(self.episode_ends[i]))

    def episode(self, i: int) -> Episode:
        """Episode ``i``'s arrays (views) and end flags.

        Examples:
            >>> import numpy as np
            >>> d = Demonstrations(np.zeros((2, 7, 7, 3), np.uint8), np.array([2, 1]),
            ...                    np.array([0.0, 0.9], np.float32), np.array([0, 1]),
            ...                    np.array([0]), np.array([True]), np.array([False]), {})
            >>> e = d.episode(0)
            >>> e.actions.tolist(), e.rtg.tolist(), e.terminated
            ([2, 1], [0.8999999761581421, 0.8999999761581421], True)
        """
        s = self.episode_slice(i)
        i %= self.n_episodes
        rewards = self.rewards[s]
        rtg = np.cumsum(rewards[::-1].astype(np.float64))[::-1].astype(np.float32)
        return Episode(
            obs=self.obs[s],
            actions=self.actions[s],
            rewards=rewards,
            timesteps=self.timesteps[s],
            rtg=rtg,
            terminated=bool(self.terminated[i]),
            truncated=bool(self.truncated[i]),
        )

    # ---------------------------------------------------------------- combine
    def append(self, other: Demonstrations) -> Demonstrations:
        """This set followed by ``other`` (a new object; headers merged)."""
        return Demonstrations.concatenate([self, other])

    @staticmethod
    def concatenate(parts: Sequence[Demonstrations]) -> Demonstrations:
        """Episodes of all ``parts`` in order; the header lists every part's spec.

        Raises:
            BatchError: For an empty list.
            ConfigError: If the parts disagree on ``env_id`` or ``max_steps``.
        """
        if not parts:
            raise BatchError("concatenate needs at least one Demonstrations")
        offsets = np.cumsum([0] + [p.n_steps for p in parts[:-1]])
        return Demonstrations(
            obs=np.concatenate([p.obs for p in parts]),
            actions=np.concatenate([p.actions for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]),
            timesteps=np.concatenate([p.timesteps for p in parts]),
            episode_starts=np.concatenate(
                [p.episode_starts + o for p, o in zip(parts, offsets, strict=True)]
            ).astype(np.int64),
            terminated=np.concatenate([p.terminated for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            header=merge_headers([p.header for p in parts]),
        )

    # ---------------------------------------------------------------- summary
    def outcomes(self) -> np.ndarray:
        """Per-episode outcome labels ``[E]``: ``"success"`` (positive return),
        ``"failure"`` (terminated with return <= 0: the wrong target in Memory),
        ``"truncated"`` (hit the step limit with return <= 0) or ``"incomplete"``
        (neither flag set)."""
        returns = self.episode_returns
        out = np.full(self.n_episodes, "incomplete", dtype="<U10")
        out[self.truncated] = "truncated"
        out[self.terminated] = "failure"
        out[returns > 0] = "success"
        return out

    def summary(self) -> dict[str, Any]:
        """Outcome counts and fractions, length distribution and mean return; the same
        per sampling group under ``"groups"`` if the header records them.

        Examples:
            >>> Demonstrations.empty().summary()["n_episodes"]
            0
        """
        out = _summarise(self, np.arange(self.n_episodes))
        groups = {label: _summarise(self, idx) for label, idx in self.groups().items()}
        return {**out, "groups": groups} if groups else out

    def groups(self) -> dict[str, np.ndarray]:
        """Episode indices of each sampling group recorded in the header, by label
        (e.g. ``"part0/temperature=1"``); empty if the header records none."""
        out: dict[str, np.ndarray] = {}
        offset = 0
        for p, part in enumerate(self.header.get("parts", [])):
            for spec in part.get("sampling", []) if isinstance(part, dict) else []:
                n = int(spec.get("n_episodes", 0))
                label = f"part{p}/{spec.get('label', 'group')}"
                out[label] = np.arange(offset, min(offset + n, self.n_episodes))
                offset += n
        return out if offset == self.n_episodes else {}

    # --------------------------------------------------------------------- io
    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` exactly (an ``.npz`` archive), atomically: the archive is
        written to a temporary file beside ``path``, flushed and renamed over it, so an
        existing file is only ever replaced by a complete one (a save that fails
        half-way, disk full or Ctrl+C, leaves it as it was and no temporary file).

        Examples:
            >>> import tempfile, pathlib
            >>> p = Demonstrations.empty({"env_id": "x"}).save(
            ...     pathlib.Path(tempfile.mkdtemp()) / "d.npz")
            >>> Demonstrations.load(p).header["env_id"]
            'x'
        """
        header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **self.header}
        arrays = {name: getattr(self, name) for name in _FIELDS}
        return write_atomic(
            path,
            lambda f: np.savez_compressed(f, header=np.array([json.dumps(header)]), **arrays),
        )

    @staticmethod
    def load(path: str | os.PathLike) -> Demonstrations:
        """Read a file written by :meth:`save` (plain arrays only: nothing is unpickled).

        Every array's header is checked against the bytes the file really holds before
        any memory is allocated for it, so a damaged header cannot make dtlens try to
        allocate terabytes for a kilobyte file.

        Raises:
            DemonstrationsFileError: (a :class:`~dtlens.errors.CheckpointError`) if the
                file is missing, a directory, empty, truncated or corrupt, of another
                kind (a single ``.npy`` array, a torch checkpoint, text), lacks a field,
                holds pickled object arrays (refused, never unpickled), claims more
                data than it holds, is of an unknown format or version, or its arrays
                are inconsistent. The message names the file and what to do.

        Examples:
            >>> import tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.npz"
            >>> _ = p.write_bytes(b"")
            >>> Demonstrations.load(p)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            dtlens.errors.DemonstrationsFileError: ...d.npz is empty (0 bytes): ...
        """
        path = Path(path)
        archive = open_npz(path)
        with archive:
            members = {
                name.removesuffix(".npy"): name
                for name in archive.namelist()
                if name.endswith(".npy")
            }
            names = (*_FIELDS, "header")
            missing = [k for k in names if k not in members]
            if missing:
                if any(name.endswith("data.pkl") for name in archive.namelist()):
                    raise DemonstrationsFileError(
                        f"{path} is a torch file (a model checkpoint?), not a demonstrations "
                        "file; pass the .npz written by `dtlens collect`"
                    )
                raise DemonstrationsFileError(
                    f"{path} is not a demonstrations file: missing {missing} "
                    f"(has {sorted(members)})"
                )
            arrays = {name: read_npz_array(path, archive, members[name], name) for name in names}
        header = _parse_header(path, arrays.pop("header"))
        try:
            return Demonstrations(header=header, **arrays)
        except (BatchError, ConfigError) as err:
            raise DemonstrationsFileError(
                f"{path} holds inconsistent demonstrations: {err}"
            ) from err


def merge_headers(headers: Sequence[dict]) -> dict:
    """Merge collection headers: shared ``env_id``/``max_steps``, all ``parts`` listed.

    A header without ``parts`` counts as one part holding its own other keys.

    Raises:
        ConfigError: If two headers disagree on ``env_id`` or ``max_steps``.

    Examples:
        >>> merge_headers([{"env_id": "E", "max_steps": 50, "parts": [{"agent": "a"}]},
        ...                {"env_id": "E", "agent": "b"}])
        {'env_id': 'E', 'max_steps': 50, 'parts': [{'agent': 'a'}, {'agent': 'b'}]}
    """
    merged: dict[str, Any] = {}
    parts: list = []
    for header in headers:
        for key in _SHARED_HEADER_KEYS:
            if key in header:
                if key in merged and merged[key] != header[key]:
                    raise ConfigError(
                        f"cannot combine demonstrations with different {key}: "
                        f"{merged[key]!r} and {header[key]!r}"
                    )
                merged[key] = header[key]
        if "parts" in header:
            parts.extend(header["parts"])
        else:
            own = {
                k: v
                for k, v in header.items()
                if k not in (*_SHARED_HEADER_KEYS, "format", "format_version")
            }
            if own:
                parts.append(own)
    merged["parts"] = parts
    return merged


def _summarise(demos: Demonstrations, idx: np.ndarray) -> dict[str, Any]:
    outcomes = demos.outcomes()[idx]
    lengths = demos.episode_lengths[idx]
    returns = demos.episode_returns[idx]
    n = int(idx.size)
    out: dict[str, Any] = {"n_episodes": n, "n_steps": int(lengths.sum())}
    for name in ("success", "failure", "truncated", "incomplete"):
        count = int((outcomes == name).sum())
        out[name] = count
        out[f"{name}_fraction"] = count / n if n else 0.0
    out["mean_return"] = float(returns.mean()) if n else 0.0
    out["length"] = {
        "mean": float(lengths.mean()) if n else 0.0,
        "min": int(lengths.min()) if n else 0,
        "median": float(np.median(lengths)) if n else 0.0,
        "max": int(lengths.max()) if n else 0,
        "counts": {
            int(k): int(v) for k, v in zip(*np.unique(lengths, return_counts=True), strict=True)
        },
    }
    return out


def _parse_header(path: Path, raw: np.ndarray) -> dict:
    if raw.dtype.kind != "U" or raw.shape != (1,):
        raise DemonstrationsFileError(
            f"{path}: header must be 1 JSON string, got {raw.dtype} {raw.shape}"
        )
    try:
        header = json.loads(str(raw[0]))
    except (json.JSONDecodeError, RecursionError) as err:
        raise DemonstrationsFileError(f"{path}: header is not valid JSON: {err!r}") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise DemonstrationsFileError(
            f"{path}: not a dtlens demonstrations file (header format "
            f"{header.get('format') if isinstance(header, dict) else header!r}, "
            f"expected {FORMAT_NAME!r})"
        )
    if header.get("format_version") != FORMAT_VERSION:
        raise DemonstrationsFileError(
            f"{path}: demonstrations format version {header.get('format_version')!r} is not "
            f"supported (this dtlens reads version {FORMAT_VERSION})"
        )
    del header["format"], header["format_version"]
    return header
