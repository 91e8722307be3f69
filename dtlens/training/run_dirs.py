"""A training run's directory: its ``step_k`` checkpoints and the trainer-state files.

A run directory holds one ``step_k/`` per checkpoint (k = the training step), each with
the model (``config.json``, ``model.safetensors``) and the trainer's state
(:data:`STATE_JSON`, :data:`STATE_TENSORS`: optimiser, RNG, history), so a run resumes
from its latest step (:func:`latest_checkpoint`) and the training dynamics read every
step (:func:`step_dirs`).

Example:
    >>> step_dirs("no/such/run", STATE_JSON)
    []
"""

from __future__ import annotations

from pathlib import Path

from dtlens.errors import CheckpointError

__all__ = ["STATE_JSON", "STATE_TENSORS", "latest_checkpoint", "step_dirs"]

#: the trainer's state beside a checkpoint's model: JSON (step, history, metadata) ...
STATE_JSON = "trainer_state.json"
#: ... and tensors (optimiser moments, RNG states).
STATE_TENSORS = "trainer_state.safetensors"


def latest_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a trainer checkpoint, else its ``step_k`` with the largest k.

    Example:
        >>> latest_checkpoint("runs/dt")  # doctest: +SKIP
        PosixPath('runs/dt/step_2000')
    """
    path = Path(path)
    if (path / STATE_JSON).exists():
        return path
    steps = step_dirs(path, STATE_JSON)
    if not steps:
        from dtlens.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE

        raise CheckpointError(
            f"no trainer checkpoint at {str(path)!r}: expected a directory with {STATE_JSON}, "
            f"{STATE_TENSORS}, {CONFIG_FILE} and {WEIGHTS_FILE}, or a run directory of step_k/."
        )
    return steps[-1][1]


def step_dirs(run_dir: str | Path, holding: str) -> list[tuple[int, Path]]:
    """The ``step_k`` directories of a run that hold the file ``holding``, ``(k, path)``
    sorted by k (empty when there are none).

    Example:
        >>> step_dirs("runs/dt", STATE_JSON)[-1]  # doctest: +SKIP
        (2000, PosixPath('runs/dt/step_2000'))
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        suffix = child.name.removeprefix("step_")
        if child.name.startswith("step_") and suffix.isdigit() and (child / holding).exists():
            found.append((int(suffix), child))
    return sorted(found)
