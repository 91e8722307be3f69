"""Atomic writes: a failure half-way leaves the old file whole and no temporary behind;
output paths are checked before any work.

Faults are injected: a writer that writes part of its content and raises (disk full,
Ctrl+C), ``os.fsync``/``os.replace``/``os.write`` patched to fail, an output path under a
regular file (uncreatable even for root), ``tempfile.mkstemp`` refusing (no permission).
"""

from __future__ import annotations

import os
import tempfile

import pytest

from dtlens.errors import OutputPathError
from dtlens.files import (
    append_line,
    check_writable,
    write_atomic,
    write_files_atomic,
    write_text_atomic,
)


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_permissions_are_those_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    new = write_text_atomic(tmp_path / "new.txt", "x")
    assert new.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    os.chmod(plain, 0o640)
    write_text_atomic(plain, "y")
    assert plain.stat().st_mode & 0o777 == 0o640


def test_a_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    path.write_text("old")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failing_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    path.write_text("old")

    def fail(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="Input/output"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def _half_way(error: BaseException):
    """A writer that writes part of its content, then fails."""

    def writer(handle):
        handle.write(b"partial content")
        raise error

    return writer


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["disk", "ctrl-c"]
)
def test_a_writer_failing_half_way_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "out.bin"
    write_atomic(path, b"old")
    with pytest.raises(type(error)):
        write_atomic(path, _half_way(error))
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_bytes_text_and_writers_are_written(tmp_path):
    assert write_atomic(tmp_path / "a", b"\x00\xff").read_bytes() == b"\x00\xff"
    assert write_atomic(tmp_path / "b", "é").read_bytes() == "é".encode()
    assert write_atomic(tmp_path / "c", lambda f: f.write(b"xy")).read_bytes() == b"xy"


def test_several_files_are_replaced_only_when_all_are_written(tmp_path, monkeypatch):
    first, second = tmp_path / "weights.bin", tmp_path / "config.json"
    write_files_atomic({first: b"old weights", second: "old config"})
    calls = []
    real_fsync = os.fsync

    def fsync_fails_for_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_for_the_second_file)
    with pytest.raises(OSError, match="No space"):
        write_files_atomic({first: b"new weights", second: "new config"})
    assert len(calls) == 2  # the first file was fully written before the failure
    assert first.read_bytes() == b"old weights" and second.read_text() == "old config"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.bin"]


def test_append_line_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_line(path, '{"step": 1}')
    real_write = os.write

    def write_half_then_fail(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        append_line(path, '{"step": 2, "train/loss": 0.5}')
    monkeypatch.undo()
    assert path.read_text() == '{"step": 1}\n'
    append_line(path, '{"step": 2}')
    assert path.read_text().splitlines() == ['{"step": 1}', '{"step": 2}']


def test_check_writable_accepts_new_and_existing_paths_and_creates_nothing(tmp_path):
    assert check_writable(tmp_path / "a" / "b" / "demos.npz", "file") == (
        tmp_path / "a" / "b" / "demos.npz"
    )
    assert check_writable(tmp_path / "run", "dir") == tmp_path / "run"
    (tmp_path / "old.npz").write_bytes(b"x")
    check_writable(tmp_path / "old.npz", "file")
    check_writable(tmp_path, "dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npz"]


def test_check_writable_names_the_path_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputPathError, match=r"--out .*file\.txt/sub/d\.npz cannot be created: "):
        check_writable(tmp_path / "file.txt" / "sub" / "d.npz", "file", "--out")
    with pytest.raises(OutputPathError, match=r"file\.txt is a file, but a directory is written"):
        check_writable(tmp_path / "file.txt", "dir")
    with pytest.raises(OutputPathError, match=r"folder is a directory, but a file is written"):
        check_writable(tmp_path / "folder", "file")

    # no permission (chmod cannot show it to root): the probe file cannot be created
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(
        OutputPathError, match=r"folder/x\.json is not writable: .*Permission denied"
    ):
        check_writable(tmp_path / "folder" / "x.json", "file")
