"""Writing files so that a failure half-way never leaves a broken one behind.

Every file dtlens writes (checkpoints, trainer state, demonstrations, reports,
calibration JSON, figures) goes through :func:`write_atomic`: the content is written
to a temporary file in the destination's directory, flushed and fsync'ed, and only
then renamed over the destination. A reader (or the next run) sees the old file or
the whole new one, never a part; a write that fails half-way (disk full, Ctrl+C)
leaves the old file as it was and no temporary file behind. :func:`write_files_atomic`
writes several files of one directory (a checkpoint's config and weights) so that
none is replaced before all are complete.

:func:`check_writable` checks an output path *before* a command starts its work, so
an unwritable ``--out`` fails in a second, not after an hour of training.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.json"
    >>> _ = write_text_atomic(path, "{}\\n")
    >>> path.read_text()
    '{}\\n'
    >>> _ = write_atomic(path, b"[]")
    >>> path.read_bytes()
    b'[]'
    >>> sorted(p.name for p in path.parent.iterdir())  # no temporary file left
    ['out.json']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Literal

from dtlens.errors import OutputPathError

__all__ = [
    "Content",
    "append_line",
    "check_writable",
    "write_atomic",
    "write_files_atomic",
    "write_text_atomic",
]

#: What can be written: text (UTF-8), bytes, or a function that writes into a binary
#: file handle (``lambda f: np.savez_compressed(f, ...)``, ``lambda f: torch.save(x, f)``).
Content = str | bytes | Callable[[IO[bytes]], object]


def write_atomic(path: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`.

    The content goes to a temporary file in the same directory (created if missing),
    which is flushed, fsync'ed and renamed over ``path``: readers see the old file or
    the whole new one, never a part. On any failure, Ctrl+C included, the temporary
    file is removed and ``path`` is left as it was. A replaced file keeps its
    permissions; a new one gets the usual ``0o666`` less the umask.

    Args:
        path: the file to write.
        content: ``str`` (written as UTF-8), ``bytes``, or a callable that writes into
            the binary file handle it is given (for writers that take a file object:
            ``np.savez_compressed``, ``torch.save``, ``figure.write_html``...).

    Examples:
        >>> import io, json, tempfile, pathlib
        >>> import numpy as np
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_atomic(folder / "a.npz", lambda f: np.savez(f, x=np.arange(3)))
        >>> np.load(folder / "a.npz")["x"].tolist()
        [0, 1, 2]
        >>> def half_way(f):
        ...     f.write(b"partial")
        ...     raise OSError(28, "No space left on device")
        >>> write_atomic(folder / "a.npz", half_way)
        Traceback (most recent call last):
        OSError: [Errno 28] No space left on device
        >>> np.load(folder / "a.npz")["x"].tolist(), sorted(p.name for p in folder.iterdir())
        ([0, 1, 2], ['a.npz'])
    """
    return write_files_atomic({path: content})[0]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`).

    Example:
        >>> import tempfile, pathlib
        >>> p = write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "note.txt", "hi")
        >>> p.read_text()
        'hi'
    """
    return write_atomic(path, text)


def write_files_atomic(files: Mapping[str | os.PathLike, Content]) -> list[Path]:
    """Write several files so that none is replaced until every one is complete.

    Each file is first written in full to a temporary file beside it (flushed and
    fsync'ed); only when all are written are they renamed over their destinations, in
    the order given. A failure while writing (disk full, an error in a writer, Ctrl+C)
    removes every temporary file and leaves every destination as it was. Renames
    need no space, so a checkpoint's config and weights are replaced together.

    Args:
        files: destination path -> content (as for :func:`write_atomic`).

    Returns:
        The destination paths, in order.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> paths = write_files_atomic({d / "w.bin": b"\\x00", d / "c.json": "{}"})
        >>> tuple(p.name for p in paths)
        ('w.bin', 'c.json')
    """
    staged: list[tuple[Path, str]] = []
    try:
        for destination, content in files.items():
            path = Path(destination)
            staged.append((path, _write_temporary(path, content)))
        for path, tmp in staged:
            os.replace(tmp, path)
    except BaseException:
        for _, tmp in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for directory in {path.parent for path, _ in staged}:
        _fsync_directory(directory)
    return [path for path, _ in staged]


def append_line(path: str | os.PathLike, line: str) -> Path:
    """Append ``line`` (and a newline) to ``path``, all or nothing.

    For logs that grow a line at a time (``metrics.jsonl``), where replacing the whole
    file for every line would cost too much: the line is appended with ``O_APPEND``,
    and a write that fails half-way (disk full, Ctrl+C) is cut back off, so the file
    never ends in a partial line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> _ = append_line(p, '{"step": 1}'); _ = append_line(p, '{"step": 2}')
        >>> p.read_text().splitlines()
        ['{"step": 1}', '{"step": 2}']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    return path


def _write_temporary(path: Path, content: Content) -> str:
    """Write ``content`` to a new temporary file beside ``path``; return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600; keep the file's (or a new file's) mode
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, str):
                handle.write(content.encode("utf-8"))
            elif isinstance(content, (bytes, bytearray, memoryview)):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _fsync_directory(directory: Path) -> None:
    """Make the renames durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def check_writable(
    path: str | os.PathLike, kind: Literal["file", "dir"], flag: str | None = None
) -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind``; return it.

    A file path must not be a directory; a directory path must not be a file; the
    deepest part of ``path`` that exists must be a directory in which a file can be
    created (tested by creating and removing a temporary file there, so read-only
    file systems and permissions are caught as they really are). Nothing else is
    created: missing directories are made later, by the write itself.

    Args:
        path: the output path.
        kind: ``"file"`` (written as one file) or ``"dir"`` (files are written into it).
        flag: the command-line option that named the path (``"--out"``), for the message.

    Raises:
        OutputPathError: ``path`` cannot be written; the message names the path, why,
            and what to do.

    Examples:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> check_writable(root / "new" / "demos.npz", "file") == root / "new" / "demos.npz"
        True
        >>> _ = (root / "notes.txt").write_text("x")
        >>> check_writable(root / "notes.txt" / "run", "dir", flag="--out")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.errors.OutputPathError: --out ... is a file, not a directory; choose another path
    """
    path = Path(path)
    name = f"{flag} {path}" if flag else str(path)
    if kind == "file" and path.is_dir():
        raise OutputPathError(
            f"{name} is a directory, but a file is written there; name a file path "
            f"(e.g. {path / 'out'}) or remove the directory"
        )
    if kind == "dir" and path.exists() and not path.is_dir():
        raise OutputPathError(
            f"{name} is a file, but a directory is written there; choose another path "
            "or remove the file"
        )
    # the directory the write happens in: path itself for a dir, its parent for a file
    target = path if kind == "dir" else path.parent
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(
            f"{name} cannot be created: {existing} is a file, not a directory; choose another path"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dtlens-write-check.")
    except OSError as err:
        raise OutputPathError(
            f"{name} is not writable: cannot create a file in {existing} "
            f"({err.strerror or err}); choose a writable path or fix the permissions"
        ) from err
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return path
