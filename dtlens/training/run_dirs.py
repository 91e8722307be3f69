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

import shutil
from pathlib import Path

from dtlens.errors import CheckpointError, OutputPathError

__all__ = [
    "STATE_JSON",
    "STATE_TENSORS",
    "earlier_run",
    "latest_checkpoint",
    "refuse_earlier_run",
    "remove_run",
    "step_dirs",
]

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


def step_dirs(run_dir: str | Path, holding: str, prefix: str = "step_") -> list[tuple[int, Path]]:
    """The ``step_k`` directories of a run that hold the file ``holding``, ``(k, path)``
    sorted by k (empty when there are none); ``prefix="update_"`` for a PPO run's
    ``update_NNNNNN`` checkpoints.

    Example:
        >>> step_dirs("runs/dt", STATE_JSON)[-1]  # doctest: +SKIP
        (2000, PosixPath('runs/dt/step_2000'))
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        suffix = child.name.removeprefix(prefix)
        if child.name.startswith(prefix) and suffix.isdigit() and (child / holding).exists():
            found.append((int(suffix), child))
    return sorted(found)


def earlier_run(run_dir: str | Path, checkpoint_prefix: str, log_file: str) -> list[Path]:
    """What an earlier run left in ``run_dir``: its checkpoints (``final/`` and every
    ``<checkpoint_prefix>...``), sorted by name, then its ``log_file`` if present.

    ``dtlens train`` runs leave ``step_k/`` and ``metrics.jsonl``; ``dtlens train-ppo``
    runs leave ``update_NNNNNN/`` and ``history.json``.

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> for name in ("step_20", "step_10", "final", "notes"):
        ...     (run / name).mkdir()
        >>> _ = (run / "metrics.jsonl").write_text("{}")
        >>> [p.name for p in earlier_run(run, "step_", "metrics.jsonl")]
        ['final', 'step_10', 'step_20', 'metrics.jsonl']
        >>> earlier_run(run / "missing", "step_", "metrics.jsonl")
        []
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        p for p in run_dir.iterdir() if p.name == "final" or p.name.startswith(checkpoint_prefix)
    ]
    log = run_dir / log_file
    return sorted(found) + ([log] if log.exists() else [])


def refuse_earlier_run(where: str, earlier: list[Path], advice: str) -> None:
    """Raise OutputPathError naming (up to 4 of) ``earlier`` if there is an earlier run.

    Args:
        where: how the message names the directory (``"runs/dt"``, ``"--out runs/ppo"``).
        earlier: what :func:`earlier_run` found (nothing: return).
        advice: what the user can do instead (after ``"; "``).

    Example:
        >>> refuse_earlier_run("runs/dt", [], "pass --overwrite")
        >>> refuse_earlier_run("runs/dt", [Path("final")], "pass --overwrite")
        Traceback (most recent call last):
        dtlens.errors.OutputPathError: runs/dt already holds a run (final); pass --overwrite
    """
    if earlier:
        names = ", ".join(p.name for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
        raise OutputPathError(f"{where} already holds a run ({names}); {advice}")


def remove_run(earlier: list[Path]) -> None:
    """Delete what :func:`earlier_run` found (directories with their contents).

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> (run / "final").mkdir()
        >>> _ = (run / "final" / "weights").write_text("w")
        >>> _ = (run / "history.json").write_text("[]")
        >>> remove_run(earlier_run(run, "update_", "history.json"))
        >>> list(run.iterdir())
        []
    """
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
