"""Reading a demonstrations ``.npz`` archive without trusting it.

:func:`open_npz` opens a file as a zip archive and names every way it can fail to be
one (missing, a directory, empty, a single ``.npy``, not a zip, truncated);
:func:`read_npz_array` reads one array after checking its ``.npy`` header against the
bytes the archive really holds, so a damaged header cannot make dtlens allocate
terabytes for a kilobyte file, and refuses pickled object arrays. Both raise
:class:`~dtlens.errors.DemonstrationsFileError` naming the file and what to do.

Examples:
    >>> import io, tempfile, pathlib, zipfile
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(path, x=np.arange(3))
    >>> with open_npz(path) as archive:
    ...     read_npz_array(path, archive, "x.npy", "x").tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from dtlens.errors import DemonstrationsFileError

__all__ = ["open_npz", "read_npz_array"]


def open_npz(path: Path) -> zipfile.ZipFile:
    """``path`` opened as a zip archive, or a named error for every way it is not one."""
    if not path.exists():
        raise DemonstrationsFileError(f"no demonstrations file at {path}")
    if path.is_dir():
        raise DemonstrationsFileError(
            f"{path} is a directory, not a demonstrations file; pass the .npz written by "
            "`dtlens collect`"
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            start = f.read(8)
    except OSError as err:
        raise DemonstrationsFileError(f"cannot read demonstrations file {path}: {err}") from err
    if size == 0:
        raise DemonstrationsFileError(
            f"{path} is empty (0 bytes): a write that never finished, or not a dtlens "
            "file; collect the demonstrations again (`dtlens collect`)"
        )
    if start.startswith(b"\x93NUMPY"):
        raise DemonstrationsFileError(
            f"{path} is a single .npy array, not a demonstrations .npz archive; pass the "
            "file written by `dtlens collect` or Demonstrations.save"
        )
    if not start.startswith(b"PK"):
        raise DemonstrationsFileError(
            f"{path} is not a readable .npz archive (it starts with {start!r}, not a zip "
            "header); pass the file written by `dtlens collect` or Demonstrations.save"
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise DemonstrationsFileError(
            f"{path} is truncated or corrupt ({size} bytes; {err}): its zip directory is "
            "missing or damaged, as after an interrupted copy; restore a copy or collect "
            "the demonstrations again"
        ) from err


def read_npz_array(path: Path, archive: zipfile.ZipFile, member: str, name: str) -> np.ndarray:
    """Read one array, checking its header against the bytes the archive holds first."""
    info = archive.getinfo(member)
    damaged = (
        f"{path} is corrupt: array {name!r} cannot be read; restore a copy or collect "
        "the demonstrations again"
    )
    # deflate compresses at most ~1032:1, so a larger claim is a damaged zip directory
    limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else 1032)
    if info.file_size > limit + 1024:
        raise DemonstrationsFileError(
            f"{damaged} (the archive claims {info.file_size} bytes for it from "
            f"{info.compress_size} stored)"
        )
    try:
        with archive.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            readers = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }
            if version not in readers:
                raise ValueError(f".npy format version {version} is not one dtlens writes")
            shape, _, dtype = readers[version](fp)
            header_size = fp.tell()
        if dtype.hasobject:
            raise DemonstrationsFileError(
                f"{path}: array {name!r} holds pickled Python objects; refusing to load it "
                "(dtlens files hold plain arrays only)"
            )
        if any(size < 0 for size in shape):
            raise ValueError(f"negative size in shape {list(shape)}")
        n_bytes = dtype.itemsize
        for size in shape:
            n_bytes *= int(size)
        held = info.file_size - header_size
        if n_bytes > held:
            rows = f"{shape[0]} rows, " if shape else ""
            raise DemonstrationsFileError(
                f"{path}: array {name!r} claims shape {list(shape)} ({rows}{n_bytes} bytes) "
                f"but the file holds {held} bytes of it: the file is truncated or its header "
                "is damaged; restore a copy or collect the demonstrations again"
            )
        with archive.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)
    except DemonstrationsFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DemonstrationsFileError(f"{damaged} ({err})") from err
