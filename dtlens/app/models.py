"""The app's model picker: which checkpoints may be loaded, and a small cache of loaded ones.

The page offers the model given on the command line (``--model``) and every checkpoint
found in the models folder (``--models-dir``): dtlens checkpoint directories (holding
``config.json`` and ``model.safetensors``) and original-project ``.pt`` / ``.pth`` files.
A choice arrives from the browser as a string, so it is checked on the server: the
initial model, or a path that resolves (symlinks followed) inside the models folder.
Anything else is refused with a :class:`~dtlens.errors.CheckpointError`, never loaded.

Loaded models are kept in a small least-recently-used cache, so switching back and forth
between two models does not reload them, and they are checked against the Memory
environment (observation shape, number of actions) before the app uses them.

Example:
    >>> catalog = ModelCatalog(models_dir="checkpoints/", initial="memorydt")  # doctest: +SKIP
    >>> [option.label for option in catalog.options()]  # doctest: +SKIP
    ['memorydt', 'dti_memory_gated_mlp.pt', 'tiny/']
    >>> model = catalog.get("dti_memory_gated_mlp.pt")  # doctest: +SKIP
    >>> catalog.get("../secret.pt")  # doctest: +SKIP
    Traceback (most recent call last):
    dtlens.errors.CheckpointError: '../secret.pt' is outside the models folder ...
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dtlens.env import N_ACTIONS, N_CHANNELS, VIEW_SIZE
from dtlens.errors import CheckpointError, ConfigError
from dtlens.model.checkpoint import CONFIG_FILE, SHIPPED_MODELS, WEIGHTS_FILE, load
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.locks import hooks_lock

__all__ = [
    "ORIGINAL_SUFFIXES",
    "ModelCatalog",
    "ModelOption",
    "check_compatible",
    "list_checkpoints",
]

#: file suffixes of original-project checkpoints.
ORIGINAL_SUFFIXES = (".pt", ".pth")
#: the observation shape of the Memory env's one-hot view.
ENV_OBS_SHAPE = (VIEW_SIZE, VIEW_SIZE, N_CHANNELS)


@dataclass(frozen=True)
class ModelOption:
    """One entry of the model picker.

    Attributes:
        label: what the page shows (a file or directory name, or the ``--model`` value).
        value: what the page sends back when it is picked (the same string).
    """

    label: str
    value: str


def list_checkpoints(directory: str | Path) -> list[str]:
    """Names of the checkpoints directly inside ``directory``, sorted.

    A dtlens checkpoint directory is listed as ``"name/"``, an original ``.pt`` / ``.pth``
    file as ``"name.pt"``. Other files and folders are ignored, and so are links that
    lead outside the folder (they could not be loaded, see :meth:`ModelCatalog.resolve`).

    Args:
        directory: the models folder.

    Raises:
        CheckpointError: ``directory`` does not exist or is not a folder.

    Example:
        >>> list_checkpoints("checkpoints/")  # doctest: +SKIP
        ['dti_memory_gated_mlp.pt', 'tiny/']
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(
            f"models folder {str(folder)!r} does not exist or is not a directory; pass "
            "--models-dir a folder holding dtlens checkpoint directories or .pt files."
        )
    root = folder.resolve()
    names = []
    for entry in sorted(folder.iterdir()):
        if not entry.resolve().is_relative_to(root):
            continue
        if entry.is_dir() and (entry / CONFIG_FILE).is_file() and (entry / WEIGHTS_FILE).is_file():
            names.append(entry.name + "/")
        elif entry.is_file() and entry.suffix in ORIGINAL_SUFFIXES:
            names.append(entry.name)
    return names


def check_compatible(model: HookedDecisionTransformer) -> None:
    """Raise ConfigError unless ``model`` reads the Memory env's views and acts in it.

    The app feeds one-hot ``[7, 7, 20]`` views of ``MiniGrid-MemoryS7FixedStart-v0`` and
    steps the env with the model's argmax action, so the model's ``obs_shape`` and
    ``n_actions`` must match the env's.

    Example:
        >>> check_compatible(dtlens.load("memorydt"))  # doctest: +SKIP
    """
    cfg = model.cfg
    if tuple(cfg.obs_shape) != ENV_OBS_SHAPE:
        raise ConfigError(
            f"this model reads observations of shape {list(cfg.obs_shape)} (obs_shape in its "
            f"config), but the app's Memory env gives one-hot views of shape "
            f"{list(ENV_OBS_SHAPE)}; pick a model trained on MiniGrid one-hot views."
        )
    if cfg.n_actions != N_ACTIONS:
        raise ConfigError(
            f"this model has n_actions={cfg.n_actions}, but the Memory env has {N_ACTIONS} "
            "actions (left, right, forward, pickup, drop, toggle, done)."
        )


class ModelCatalog:
    """The models a running app may load, and a least-recently-used cache of loaded ones.

    Args:
        models_dir: the folder whose checkpoints the picker lists (``--models-dir``);
            None for none.
        initial: the model given on the command line (``--model``: ``"memorydt"``, a
            checkpoint directory or a ``.pt``), always allowed; None for none. A name
            that is neither a shipped model nor an existing path but is an entry of
            ``models_dir`` (``"tiny"`` or ``"tiny/"``) means that entry.
        loader: the function loading a path or name (default :func:`dtlens.load`).
        cache_size: how many loaded models to keep.

    Raises:
        CheckpointError: ``models_dir`` is not a folder.
        ConfigError: neither ``models_dir`` nor ``initial`` is given, or ``cache_size < 1``.

    Example:
        >>> catalog = ModelCatalog(models_dir="checkpoints/")  # doctest: +SKIP
        >>> catalog.default_value  # doctest: +SKIP
        'dti_memory_gated_mlp.pt'
    """

    def __init__(
        self,
        models_dir: str | Path | None = None,
        initial: str | None = None,
        loader: Callable[[str | Path], HookedDecisionTransformer] = load,
        cache_size: int = 4,
    ):
        if models_dir is None and initial is None:
            raise ConfigError("the app needs a model (--model) or a models folder (--models-dir).")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigError(f"cache_size must be a positive int, got {cache_size!r}.")
        self.models_dir = None if models_dir is None else Path(models_dir)
        if self.models_dir is not None:
            list_checkpoints(self.models_dir)  # raises for a missing folder
        self.initial = None if initial is None else self._folder_entry(str(initial))
        self._loader = loader
        self._cache_size = cache_size
        self._cache: OrderedDict[str, HookedDecisionTransformer] = OrderedDict()
        self._lock = threading.Lock()

    def _folder_entry(self, initial: str) -> str:
        """``initial``, or the models folder's entry it names (see the class docstring)."""
        if self.models_dir is None or initial in SHIPPED_MODELS or Path(initial).exists():
            return initial
        listed = list_checkpoints(self.models_dir)
        for name in (initial, initial.rstrip("/") + "/"):
            if name in listed:
                return name
        return initial

    def options(self) -> list[ModelOption]:
        """The picker's entries: the initial model first, then the folder's checkpoints."""
        values = [] if self.initial is None else [self.initial]
        if self.models_dir is not None:
            values += [name for name in list_checkpoints(self.models_dir) if name not in values]
        return [ModelOption(value, value) for value in values]

    @property
    def default_value(self) -> str | None:
        """The model selected when a page opens (the initial one, else the first listed)."""
        options = self.options()
        return options[0].value if options else None

    def resolve(self, value: str) -> str | Path:
        """The name or path to load for a picker value; refuses anything outside the folder.

        Raises:
            CheckpointError: ``value`` is not the initial model and does not resolve to
                an existing path inside the models folder.

        Example:
            >>> catalog.resolve("tiny/")  # doctest: +SKIP
            PosixPath('/abs/checkpoints/tiny')
        """
        if not isinstance(value, str) or not value:
            raise CheckpointError(f"no model picked (got {value!r}); choose one in the picker.")
        if value == self.initial and (
            self.models_dir is None or value not in list_checkpoints(self.models_dir)
        ):
            return value
        if self.models_dir is None:
            raise CheckpointError(
                f"{value!r} is not the app's model ({self.initial!r}) and the app was started "
                "without --models-dir, so no other checkpoint may be loaded."
            )
        root = self.models_dir.resolve()
        try:
            path = (root / value).resolve()
            exists = path.exists()
        except (OSError, ValueError) as err:  # a name too long, a NUL byte ...
            reason = getattr(err, "strerror", None) or err
            raise CheckpointError(
                f"{value[:80]!r} is not a usable file name ({reason}); "
                f"pick a checkpoint in the picker (available: {list_checkpoints(root)})."
            ) from err
        if not path.is_relative_to(root):
            raise CheckpointError(
                f"{value!r} is outside the models folder {str(root)!r}; the app only loads "
                "checkpoints inside it."
            )
        if not exists:
            raise CheckpointError(
                f"{value!r} does not exist in the models folder {str(root)!r}; available: "
                f"{list_checkpoints(root)}."
            )
        return path

    def get(self, value: str) -> HookedDecisionTransformer:
        """The loaded, env-compatible model for a picker value (cached).

        Raises:
            CheckpointError: the value is refused (see :meth:`resolve`) or the
                checkpoint cannot be loaded.
            ConfigError: the model does not fit the Memory env (see
                :func:`check_compatible`).

        Example:
            >>> model = catalog.get("tiny/")  # doctest: +SKIP
        """
        target = self.resolve(value)
        with self._lock:
            if value in self._cache:
                self._cache.move_to_end(value)
                return self._cache[value]
            model = self._loader(target)
            check_compatible(model)
            self._cache[value] = model
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return model

    def forward_lock(self, model: HookedDecisionTransformer) -> threading.RLock:
        """The lock to hold while running ``model``: :func:`dtlens.model.hooks_lock`.

        TransformerLens hooks live on the model's modules, so two forwards with hooks
        (``run_with_cache``, patching) on one model in two threads at once would see
        each other's hooks. The server answers requests in parallel threads (and two
        pages may share a model), so every forward the app runs holds this lock; take
        it innermost, after any session lock. It is the model's own lock, so code
        outside the app that runs the same model object from another thread (holding
        ``hooks_lock(model)``) is serialised with the app too.

        Example:
            >>> with catalog.forward_lock(model):  # doctest: +SKIP
            ...     logits, cache = model.run_with_cache(batch)
        """
        return hooks_lock(model)
