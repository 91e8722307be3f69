"""Demonstrations: derived labels on hand-written episodes, validation, file round trip.

Damaged files are made by hand: truncated at several points, emptied, a byte flipped in
the compressed data, other kinds of file in its place (a ``.npy`` array, a torch
checkpoint, text, a directory), and archives whose array headers claim more rows than
the file holds. A save is made to fail half-way by a writer that writes part of the
archive and raises (disk full, Ctrl+C).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from dtlens.data.demonstrations import Demonstrations, merge_headers
from dtlens.errors import (
    BatchError,
    CheckpointError,
    ConfigError,
    DemonstrationsFileError,
    DTLensError,
)

HEADER = {
    "env_id": "MiniGrid-MemoryS7FixedStart-v0",
    "max_steps": 50,
    "parts": [
        {
            "agent": "hand",
            "sampling": [{"label": "a", "n_episodes": 2}, {"label": "b", "n_episodes": 2}],
        }
    ],
}


def hand_demos(**changes) -> Demonstrations:
    """Four episodes: success after 3 steps, wrong target after 2, truncated after 2
    (max_steps 2 in spirit), success on the very last allowed step (both flags)."""
    rewards = [0.0, 0.0, 0.946, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1]
    fields = dict(
        obs=np.arange(9 * 147, dtype=np.int64).reshape(9, 7, 7, 3).__mod__(3).astype(np.uint8),
        actions=np.array([2, 2, 1, 2, 0, 6, 5, 2, 2], dtype=np.int64),
        rewards=np.array(rewards, dtype=np.float32),
        timesteps=np.array([0, 1, 2, 0, 1, 0, 1, 0, 1], dtype=np.int64),
        episode_starts=np.array([0, 3, 5, 7], dtype=np.int64),
        terminated=np.array([True, True, False, True]),
        truncated=np.array([False, False, True, True]),
        header=HEADER,
    )
    return Demonstrations(**{**fields, **changes})


def test_derived_per_episode_and_per_step_values():
    d = hand_demos()
    assert (d.n_steps, d.n_episodes) == (9, 4)
    assert d.episode_lengths.tolist() == [3, 2, 2, 2]
    assert d.episode_ends.tolist() == [3, 5, 7, 9]
    np.testing.assert_allclose(d.episode_returns, [0.946, 0, 0, 0.1], rtol=1e-6)
    # return-to-go: this step's and later rewards of the same episode only
    expected_rtg = [0.946, 0.946, 0.946, 0, 0, 0, 0, 0.1, 0.1]
    np.testing.assert_allclose(d.rtg, expected_rtg, rtol=1e-6)
    assert d.rtg.dtype == np.float32
    episode = d.episode(-1)
    assert episode.actions.tolist() == [2, 2] and episode.terminated and episode.truncated
    np.testing.assert_allclose(episode.rtg, [0.1, 0.1], rtol=1e-6)
    assert d.episode_slice(1) == slice(3, 5)


def test_rtg_with_several_rewards_in_an_episode():
    d = hand_demos(rewards=np.array([0.25, 0.5, 0.125, 1, 0, 0, 0, 0, 0], dtype=np.float32))
    assert d.rtg.tolist() == [0.875, 0.625, 0.125, 1.0, 0.0, 0, 0, 0, 0]


def test_summary_counts_and_lengths():
    s = hand_demos().summary()
    assert (s["success"], s["failure"], s["truncated"], s["incomplete"]) == (2, 1, 1, 0)
    assert s["success_fraction"] == 0.5
    assert s["mean_return"] == pytest.approx((0.946 + 0.1) / 4)
    assert s["length"] == {"mean": 2.25, "min": 2, "median": 2.0, "max": 3, "counts": {2: 3, 3: 1}}
    # groups from the header's sampling entries: a = episodes 0, 1; b = 2, 3
    assert s["groups"]["part0/a"]["success"] == 1 and s["groups"]["part0/a"]["failure"] == 1
    assert s["groups"]["part0/b"]["truncated"] == 1 and s["groups"]["part0/b"]["success"] == 1
    assert hand_demos().outcomes().tolist() == ["success", "failure", "truncated", "success"]


def test_save_load_round_trip(tmp_path):
    d = hand_demos()
    path = d.save(tmp_path / "sub" / "demos.npz")
    assert path == tmp_path / "sub" / "demos.npz" and path.is_file()
    loaded = Demonstrations.load(path)
    for name in (
        "obs",
        "actions",
        "rewards",
        "timesteps",
        "episode_starts",
        "terminated",
        "truncated",
    ):
        original, back = getattr(d, name), getattr(loaded, name)
        assert back.dtype == original.dtype and np.array_equal(back, original), name
    assert loaded.header == HEADER
    assert [p.name for p in path.parent.iterdir()] == ["demos.npz"]  # no temp file left


_UNPICKLED = []


class _Tripwire:
    def __reduce__(self):
        return (_UNPICKLED.append, ("unpickled!",))


def test_file_with_pickled_object_arrays_is_refused(tmp_path):
    d = hand_demos()
    arrays = {
        n: getattr(d, n)
        for n in ("actions", "rewards", "timesteps", "episode_starts", "terminated", "truncated")
    }
    header = np.array([json.dumps({"format": "dtlens.demonstrations", "format_version": 1})])
    obs = np.empty(1, dtype=object)
    obs[0] = _Tripwire()
    path = tmp_path / "evil.npz"
    np.savez(path, obs=obs, header=header, **arrays)
    with pytest.raises(CheckpointError, match="'obs' holds pickled Python objects"):
        Demonstrations.load(path)
    assert _UNPICKLED == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip", "not a readable .npz"),
        (None, "missing"),
        ({"format": "something-else"}, "not a dtlens demonstrations file"),
        ({"format": "dtlens.demonstrations", "format_version": 99}, "version 99"),
    ],
)
def test_foreign_or_broken_files_are_refused(tmp_path, content, message):
    path = tmp_path / "x.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        np.savez(path, actions=np.zeros(1, dtype=np.int64))
    else:
        d = hand_demos()
        d.save(path)
        arrays = dict(np.load(path))
        arrays["header"] = np.array([json.dumps(content)])
        np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=message):
        Demonstrations.load(path)
    with pytest.raises(CheckpointError, match="no demonstrations file"):
        Demonstrations.load(tmp_path / "absent.npz")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"actions": np.zeros(9, dtype=np.int32)}, "actions must be a numpy array of int64"),
        ({"rewards": [0.0] * 9}, "rewards must be a numpy array of float32, got list"),
        ({"obs": np.zeros((9, 7, 7, 20), dtype=np.uint8)}, r"obs must have shape \['N', 7, 7, 3\]"),
        ({"actions": np.zeros(8, dtype=np.int64)}, "actions has 8 entries but obs has 9"),
        ({"truncated": np.zeros(3, dtype=bool)}, "truncated has 3 entries but episode_starts"),
        ({"episode_starts": np.array([1, 3, 5, 7])}, "must start at 0"),
        ({"episode_starts": np.array([0, 3, 3, 7])}, "increase strictly"),
        ({"actions": np.array([2, 2, 1, 2, 0, 6, 5, 2, 7])}, r"actions must be in 0\.\.6"),
        ({"timesteps": np.array([0, 1, 3, 0, 1, 0, 1, 0, 1])}, r"\[1, 3\] at steps 1\.\.2"),
        ({"rewards": np.full(9, np.nan, dtype=np.float32)}, "finite"),
        ({"obs": np.full((9, 7, 7, 3), 11, dtype=np.uint8)}, "0..10"),
    ],
)
def test_inconsistent_fields_are_named(changes, message):
    with pytest.raises(BatchError, match=message):
        hand_demos(**changes)


def test_header_must_be_json():
    with pytest.raises(ConfigError, match="JSON"):
        hand_demos(header={"bad": object()})


def test_timesteps_may_restart_between_episodes_only():
    d = hand_demos(timesteps=np.array([4, 5, 6, 0, 1, 9, 10, 0, 1]))  # consecutive within
    assert d.timesteps[5] == 9


def test_concatenate_offsets_episodes_and_lists_parts():
    a, b = hand_demos(), hand_demos(header={**HEADER, "parts": [{"agent": "other"}]})
    both = a.append(b)
    assert both.n_episodes == 8
    assert both.episode_starts.tolist() == [0, 3, 5, 7, 9, 12, 14, 16]
    np.testing.assert_array_equal(both.rtg[9:], a.rtg)
    assert [p["agent"] for p in both.header["parts"]] == ["hand", "other"]
    assert Demonstrations.empty().append(a).episode_starts.tolist() == [0, 3, 5, 7]
    with pytest.raises(ConfigError, match="different max_steps"):
        a.append(hand_demos(header={**HEADER, "max_steps": 20}))
    with pytest.raises(DTLensError, match="at least one"):
        Demonstrations.concatenate([])


def test_merge_headers_keeps_shared_facts():
    merged = merge_headers([{"env_id": "E", "agent": "x"}, {"env_id": "E", "parts": [{"a": 1}]}])
    assert merged == {"env_id": "E", "parts": [{"agent": "x"}, {"a": 1}]}


@pytest.fixture
def saved(tmp_path):
    return hand_demos().save(tmp_path / "demos.npz")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_named(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    expected = "is empty" if keep == 0 else "is truncated or corrupt"
    with pytest.raises(DemonstrationsFileError, match=expected):
        Demonstrations.load(saved)


def test_a_flipped_byte_in_the_compressed_data_is_named(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(DemonstrationsFileError, match=r"is corrupt: array '\w+' cannot be read"):
        Demonstrations.load(saved)


def test_files_of_another_kind_are_named(tmp_path):
    npy = tmp_path / "a.npz"
    with npy.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DemonstrationsFileError, match=r"is a single \.npy array"):
        Demonstrations.load(npy)
    model = tmp_path / "model.npz"
    torch.save({"w": torch.zeros(2)}, model)
    with pytest.raises(DemonstrationsFileError, match="is a torch file"):
        Demonstrations.load(model)
    text = tmp_path / "notes.npz"
    text.write_text("episode 1: success")
    with pytest.raises(DemonstrationsFileError, match=r"not a readable \.npz archive"):
        Demonstrations.load(text)
    with pytest.raises(DemonstrationsFileError, match="is a directory"):
        Demonstrations.load(tmp_path)


def _forge(source, target, field, rows):
    """Rewrite ``source`` with ``field``'s .npy header claiming ``rows`` rows (data unchanged)."""
    with np.load(source) as archive:
        arrays = {name: archive[name] for name in archive.files}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            if name == field:
                header = {
                    "descr": np.lib.format.dtype_to_descr(array.dtype),
                    "fortran_order": False,
                    "shape": (rows, *array.shape[1:]),
                }
                np.lib.format.write_array_header_1_0(buffer, header)
                buffer.write(array.tobytes())
            else:
                np.lib.format.write_array(buffer, array)
            zf.writestr(f"{name}.npy", buffer.getvalue())
    return target


def test_headers_claiming_more_rows_than_the_file_holds_are_refused(saved, tmp_path):
    # 10**12 steps of 7x7x3 bytes: 134 TiB claimed by a file of about 2 KB
    forged = _forge(saved, tmp_path / "forged.npz", "obs", 10**12)
    assert forged.stat().st_size < 4096
    with pytest.raises(DemonstrationsFileError) as caught:
        Demonstrations.load(forged)
    message = str(caught.value)
    assert "array 'obs' claims shape [1000000000000, 7, 7, 3]" in message
    assert "but the file holds 1323 bytes of it" in message
    forged = _forge(saved, tmp_path / "one_more.npz", "actions", 10)  # 9 steps held
    with pytest.raises(DemonstrationsFileError, match="array 'actions' claims shape \\[10\\]"):
        Demonstrations.load(forged)
    fewer = _forge(saved, tmp_path / "fewer.npz", "actions", 8)  # fits, but disagrees
    with pytest.raises(DemonstrationsFileError, match="actions has 8 entries but obs has 9"):
        Demonstrations.load(fewer)


def test_errors_are_checkpoint_errors_too(tmp_path):
    assert issubclass(DemonstrationsFileError, CheckpointError)
    assert issubclass(DemonstrationsFileError, DTLensError)


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["disk", "ctrl-c"]
)
def test_a_save_failing_half_way_keeps_the_old_file(saved, monkeypatch, error):
    before = saved.read_bytes()
    real = np.savez_compressed

    def write_part_then_fail(file, **arrays):
        real(file, **arrays)  # the whole archive into the temporary file...
        file.truncate(len(before) // 2)  # ...cut short, as a full disk would
        raise error

    monkeypatch.setattr(np, "savez_compressed", write_part_then_fail)
    with pytest.raises(type(error)):
        hand_demos(header={"env_id": "other"}).save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == ["demos.npz"]
    assert Demonstrations.load(saved).header == HEADER


def test_a_zip_directory_claiming_more_than_it_stores_is_refused(saved, tmp_path):
    with np.load(saved) as archive:
        arrays = {name: archive[name] for name in archive.files}
    stored = tmp_path / "stored.npz"
    np.savez(stored, **arrays)  # uncompressed: each member's size is its stored size
    data = bytearray(stored.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the zip's central directory
    while data[entry + 46 : entry + 46 + 7] != b"obs.npy":  # the obs member's entry
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (2**31).to_bytes(4, "little")  # uncompressed size
    stored.write_bytes(bytes(data))
    with pytest.raises(
        DemonstrationsFileError, match=r"array 'obs' cannot be read.*claims 2147483648 bytes"
    ):
        Demonstrations.load(stored)


def test_an_empty_set_has_empty_episode_arrays():
    empty = Demonstrations.empty()
    for values in (empty.episode_ends, empty.episode_lengths, empty.episode_returns, empty.rtg):
        assert values.shape == (0,)
