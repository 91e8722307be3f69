"""Minari datasets: export demonstrations to Minari, and read Minari datasets as demonstrations.

[Minari](https://minari.farama.org) is the Farama Foundation's format for offline RL
datasets. :func:`to_minari` writes :class:`~dtlens.data.demonstrations.Demonstrations`
as a local Minari dataset; :func:`from_minari` reads a local Minari dataset (one dtlens
wrote, or any MiniGrid dataset with discrete actions) back as ``Demonstrations``, so
training, windows and RTG labels work unchanged: returns-to-go are derived from the
rewards by the same code as for a native ``.npz``. Everything is local and offline:
nothing is ever downloaded (fetch a public dataset with ``minari download ID`` first).

How a dtlens episode of ``L`` steps is stored (Minari's layout: ``L + 1``
observations, ``L`` of everything else):

- ``observations``: ``Box(0, 255, (7, 7, 3), uint8)``, the raw MiniGrid index image
  (the env's ``obs["image"]``, what ``ImgObsWrapper`` returns), stored losslessly (no
  JPEG). The ``L + 1``-th, the view after the last action, is not recorded by dtlens
  and is written as zeros.
- ``actions``: ``Discrete(7)``, MiniGrid's actions.
- ``rewards``: the float32 rewards; RTG is never stored, always derived.
- ``terminations``, ``truncations``: False except at the last step, which holds the
  episode's ``terminated`` / ``truncated`` flag.
- ``infos``: ``{"timestep": [t0, ..., t0 + L]}``, the env step index.
- each episode's ``seed``: the env seed that reproduces its layout, when the header says
  how the episodes were collected (:func:`~dtlens.data.collect.collect_demonstrations`).
- metadata: ``env_spec`` (the header's env id with its ``max_steps``), the agent as
  ``algorithm_name``, and under ``"dtlens"`` the whole header.

Reading accepts observation spaces holding MiniGrid's partial view: a ``(7, 7, 3)``
index image or a ``(7, 7, 20)`` one-hot (dtlens' or minigrid's
``OneHotPartialObsWrapper`` layout), as a ``Box`` or under ``"image"`` in a ``Dict``
(MiniGrid's own observations; ``direction`` and ``mission`` are dropped); the last
observation of each episode is dropped. Minari is an optional dependency: ``pip install
"dtlens[minari]"`` (Minari with its Arrow backend).

Examples:
    >>> import tempfile
    >>> from dtlens.data import BoltzmannPlanner, collect_demonstrations
    >>> demos = collect_demonstrations(BoltzmannPlanner(), "MiniGrid-MemoryS7FixedStart-v0",
    ...                                ["greedy:3"], n_envs=3, show_progress=False)
    >>> root = tempfile.mkdtemp()
    >>> dataset = to_minari(demos, "dtlens/memory-greedy-v0", datasets_path=root)
    >>> dataset.total_episodes, dataset.total_steps, dataset.action_space
    (3, 18, Discrete(7))
    >>> back = from_minari("dtlens/memory-greedy-v0", datasets_path=root)
    >>> bool((back.obs == demos.obs).all() and (back.rtg == demos.rtg).all())
    True
    >>> back.header == demos.header
    True
"""

from dtlens.data.minari_bridge.common import (
    INSTALL_HINT,
    METADATA_KEY,
    MINARI_PREFIX,
    MinariDatasetError,
    MinariError,
    MinariNotInstalledError,
    MinariSpaceError,
    UnknownMinariDatasetError,
    minari_datasets_path,
)
from dtlens.data.minari_bridge.export import to_minari
from dtlens.data.minari_bridge.read import from_minari, load_demonstrations

__all__ = [
    "INSTALL_HINT",
    "METADATA_KEY",
    "MINARI_PREFIX",
    "MinariDatasetError",
    "MinariError",
    "MinariNotInstalledError",
    "MinariSpaceError",
    "UnknownMinariDatasetError",
    "from_minari",
    "load_demonstrations",
    "minari_datasets_path",
    "to_minari",
]
