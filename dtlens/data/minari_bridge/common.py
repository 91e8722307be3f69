"""What the Minari bridge's export and import share: its errors, the optional import,
where local datasets live, and Minari's dataset id grammar.

Examples:
    >>> from dtlens.data.minari_bridge.common import MinariSpaceError
    >>> from dtlens.errors import DTLensError
    >>> issubclass(MinariSpaceError, DTLensError) and issubclass(MinariSpaceError, ValueError)
    True
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dtlens.errors import ConfigError, DTLensError

__all__ = [
    "INSTALL_HINT",
    "METADATA_KEY",
    "MINARI_PREFIX",
    "MinariDatasetError",
    "MinariError",
    "MinariNotInstalledError",
    "MinariSpaceError",
    "UnknownMinariDatasetError",
    "minari_datasets_path",
]

#: what to run when Minari (or its Arrow backend) is missing
INSTALL_HINT = 'pip install "dtlens[minari]"'
#: the key of dtlens' own entry in a Minari dataset's metadata
METADATA_KEY = "dtlens"
#: ``load_demonstrations("minari:ID")`` reads the local Minari dataset ``ID``
MINARI_PREFIX = "minari:"
#: format of dtlens' metadata entry
_FORMAT = "dtlens.minari"
_FORMAT_VERSION = 1
#: Minari's storage backend dtlens writes (pyarrow is already a dependency of dtlens)
_DATA_FORMAT = "arrow"
_TIMESTEP_INFO = "timestep"
#: Minari's id grammar, ``(NAMESPACE/)NAME-vVERSION`` (the version is required to load)
_DATASET_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")


class MinariError(DTLensError):
    """Base class of the errors of the Minari bridge."""


class MinariNotInstalledError(MinariError, ImportError):
    """Minari, or a package its Arrow backend needs (pyarrow, pillow), is not installed;
    the message says ``pip install "dtlens[minari]"``."""


class UnknownMinariDatasetError(MinariError, KeyError):
    """No local Minari dataset with that id (or at that path); the message lists the
    local datasets and says how to fetch a public one."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class MinariDatasetError(MinariError, ValueError):
    """A Minari dataset dtlens cannot read as demonstrations: unreadable or corrupt
    files, an unsupported Minari version, or episodes that break the rules of
    :class:`~dtlens.data.demonstrations.Demonstrations` (the message names the
    dataset, the episode and the rule)."""


class MinariSpaceError(MinariDatasetError):
    """A dataset whose action space is not MiniGrid's discrete actions (continuous,
    or more than 7), or whose observation space is not MiniGrid's 7x7 partial view."""


def _import_minari() -> Any:
    """The ``minari`` module, or a :class:`MinariNotInstalledError` naming the fix."""
    try:
        import minari
        import PIL  # noqa: F401  (minari's storages import it but do not declare it)
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise MinariNotInstalledError(
            f"Minari datasets need the optional packages minari, pyarrow and pillow "
            f"({err}); install them with: {INSTALL_HINT}"
        ) from err
    return minari


def minari_datasets_path(datasets_path: str | os.PathLike | None = None) -> Path:
    """The folder holding local Minari datasets: ``datasets_path`` if given, else
    ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets`` (Minari's own rule).

    Examples:
        >>> str(minari_datasets_path("/data/minari"))
        '/data/minari'
    """
    if datasets_path is not None:
        return Path(datasets_path)
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def _check_dataset_id(dataset_id: object) -> str:
    if not isinstance(dataset_id, str) or not _DATASET_ID.match(dataset_id):
        raise ConfigError(
            f"bad Minari dataset id {dataset_id!r}: expected (NAMESPACE/)NAME-vVERSION "
            "with letters, digits, '-' and '_', e.g. 'dtlens/memory-planner-v0'"
        )
    return dataset_id
