"""Training dynamics: progress measures over a run's checkpoints, and when the plateau broke.

Background:
    A training run of :class:`~dtlens.training.trainer.Trainer` with ``checkpoint_every``
    leaves ``step_k/`` directories (``step_0`` holds the initial weights). This module
    loads each one and takes the measures of :mod:`dtlens.training.progress` (decision
    loss, greedy success per layout, layer-0 attention to the instruction, the
    instruction-swap logit difference, instruction probes per layer), plus the training
    and validation losses the run recorded, into one :class:`Dynamics`:
    ``{"steps": [...], "measures": {name: [...]}}`` (``None`` where a run recorded
    nothing, e.g. the losses at step 0). :meth:`Dynamics.story` reads from the numbers
    when the plateau broke and which measure moved first.

Usage:
    ``dtlens dynamics --run-dir runs/memorydt/train --out runs/memorydt/dynamics`` or

    >>> dynamics = training_dynamics("runs/memorydt/train", data)  # doctest: +SKIP
    >>> dynamics.story()["plateau_broke_at"]  # doctest: +SKIP
    500

References:
    The seed post ("storing model checkpoints and applying progress measures");
    Nanda et al. 2023, "Progress measures for grokking via mechanistic interpretability".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dtlens.errors import CheckpointError, ConfigError
from dtlens.files import write_text_atomic
from dtlens.training.progress import DecisionData, progress_measures

__all__ = [
    "DYNAMICS_FILE",
    "MOVED",
    "Dynamics",
    "checkpoint_steps",
    "run_dynamics",
    "training_dynamics",
]

#: The file a built model's directory keeps its training dynamics in.
DYNAMICS_FILE = "dynamics.json"

#: When a measure counts as "moved" off the plateau: (direction, threshold). Success
#: counts once it exceeds the instruction-blind 0.5; the decision loss once it is well
#: below ln 2; the swap logit difference once swapping the instruction moves the decision
#: by a logit; the last layer's probe once it reads the instruction at 90 % (a random
#: model's can already come close: see :meth:`Dynamics.story`); attention once a layer-0
#: head gives the instruction state a third of its attention.
MOVED: dict[str, tuple[str, float]] = {
    "decision_loss": ("below", 0.5),
    "success@0.9": ("above", 0.5),
    "swap_logit_diff": ("above", 1.0),
    "probe/last": ("above", 0.9),
    "attention/max": ("above", 1 / 3),
}


@dataclass
class Dynamics:
    """Measures over training steps.

    Attributes:
        steps: the checkpoints' optimiser steps, ascending.
        measures: ``{name: [value per step]}`` (``None`` where not recorded).
        meta: where it came from (run directory, thresholds).

    Example:
        >>> d = Dynamics([0, 10], {"success@0.9": [0.5, 1.0], "decision_loss": [0.69, 0.1]})
        >>> d.first_step("success@0.9", above=0.5), d.first_step("decision_loss", below=0.5)
        (10, 10)
    """

    steps: list[int]
    measures: dict[str, list[float | None]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, values in self.measures.items():
            if len(values) != len(self.steps):
                raise CheckpointError(
                    f"measure {name!r} has {len(values)} values for {len(self.steps)} steps"
                )

    def series(self, name: str) -> list[float | None]:
        """One measure's values; ``"probe/last"`` and ``"attention/max"`` are derived:
        the probe of the last layer, and the largest layer-0 head attention per step."""
        if name == "probe/last":
            probes = [k for k in self.measures if k.startswith("probe/L")]
            if not probes:
                return [None] * len(self.steps)
            return self.measures[max(probes, key=lambda k: int(k.removeprefix("probe/L")))]
        if name == "attention/max":
            heads = [v for k, v in self.measures.items() if k.startswith("attention/")]
            return [
                None if any(h[i] is None for h in heads) or not heads else max(h[i] for h in heads)
                for i in range(len(self.steps))
            ]
        return self.measures[name]

    def first_step(
        self, name: str, above: float | None = None, below: float | None = None
    ) -> int | None:
        """The first step from which the measure stays above / below the threshold."""
        values = self.series(name)
        ok = [
            v is not None and (above is None or v > above) and (below is None or v < below)
            for v in values
        ]
        for i in range(len(ok)):
            if all(ok[i:]):
                return self.steps[i]
        return None

    def story(self) -> dict[str, Any]:
        """When each measure left the plateau (:data:`MOVED`), and which moved first.

        ``plateau_broke_at``: the first step from which greedy success at RTG 0.9 stays
        at or above 0.95 (None if it never does). ``moved_at``: per measure of
        :data:`MOVED` present in the run, the first step from which it stays past its
        threshold, after having been on the plateau's side of it. A measure past its
        threshold at every checkpoint from the first (the initial weights) on tells
        nothing about learning: it goes to ``past_at_start`` instead (with ``moved_at``
        None), as the instruction probe of a randomly initialised model can (its
        attention averages the first state into every token). ``first_to_move``: the
        measure(s) with the earliest ``moved_at``.
        """
        moved: dict[str, int | None] = {}
        at_start: list[str] = []
        for name, (direction, threshold) in MOVED.items():
            values = self._maybe(name)
            if not any(v is not None for v in values):
                continue
            moved[name] = self.first_step(name, **{direction: threshold})
            if moved[name] == self.steps[0]:
                at_start.append(name)
                moved[name] = None
        steps = [s for s in moved.values() if s is not None]
        first_step = min(steps) if steps else None
        return {
            "plateau_broke_at": self.first_step("success@0.9", above=0.949)
            if "success@0.9" in self.measures
            else None,
            "moved_at": moved,
            "past_at_start": at_start,
            "first_to_move": sorted(
                k for k, s in moved.items() if s == first_step and s is not None
            ),
            "thresholds": {k: list(v) for k, v in MOVED.items()},
        }

    def _maybe(self, name: str) -> list[float | None]:
        try:
            return self.series(name)
        except KeyError:
            return []

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """``{"steps", "measures", "meta"}``, JSON-ready (non-finite values become None)."""
        clean = {
            k: [None if v is None or not math.isfinite(v) else float(v) for v in vs]
            for k, vs in self.measures.items()
        }
        return {"steps": list(self.steps), "measures": clean, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dynamics:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                [int(s) for s in data["steps"]], dict(data["measures"]), data.get("meta", {})
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"not a dynamics record: {err}") from err

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (a temporary file renamed over ``path``)."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Dynamics:
        """Read a ``dynamics.json``."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot read dynamics from {str(path)!r}: {err}") from err
        if not isinstance(data, dict):
            raise CheckpointError(f"{str(path)!r} does not hold a dynamics record")
        return cls.from_dict(data)


def checkpoint_steps(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The run's ``step_k`` checkpoint directories, ``(k, path)`` sorted by k.

    Raises:
        CheckpointError: the directory holds no ``step_k`` checkpoint.

    Example:
        >>> checkpoint_steps("runs/memorydt/train")[1]  # doctest: +SKIP
        (25, PosixPath('runs/memorydt/train/step_25'))
    """
    from dtlens.model.checkpoint import CONFIG_FILE
    from dtlens.training.run_dirs import step_dirs

    found = step_dirs(run_dir, CONFIG_FILE)
    if not found:
        raise CheckpointError(
            f"no step_k checkpoints in {str(run_dir)!r}; train with checkpoint_every set "
            "(dtlens train --checkpoint-every N, or dtlens build-memorydt) first"
        )
    return found


def _recorded(history: dict[str, list[dict]], kind: str, key: str, step: int) -> float | None:
    for record in history.get(kind, []):
        if int(record["step"]) == step:
            return float(record[key])
    return None


def training_dynamics(
    run_dir: str | Path,
    data: DecisionData | None = None,
    probe: bool = True,
    show_progress: bool = True,
) -> Dynamics:
    """Progress measures at every checkpoint of a run.

    Args:
        run_dir: a training run directory with ``step_k/`` checkpoints.
        data: held-out decision-square windows for the decision loss and the probes
            (:meth:`DecisionData.from_demonstrations`); None skips those measures.
        probe: fit the instruction probes.
        show_progress: a progress bar over checkpoints.

    Example:
        >>> dyn = training_dynamics("runs/memorydt/train", data)  # doctest: +SKIP
        >>> dyn.series("success@0.9")[-1]  # doctest: +SKIP
        1.0
    """
    from dtlens.model.checkpoint import load
    from dtlens.training.run_dirs import STATE_JSON

    checkpoints = checkpoint_steps(run_dir)
    history: dict[str, list[dict]] = {}
    last_state = checkpoints[-1][1] / STATE_JSON
    if last_state.exists():
        history = json.loads(last_state.read_text()).get("history", {})
    steps, rows = [], []
    for step, path in tqdm(checkpoints, desc="dynamics", disable=not show_progress):
        model = load(path)
        row: dict[str, float | None] = {
            "train_loss": _recorded(history, "train", "train/loss", step),
            "val_loss": _recorded(history, "val", "val/loss", step),
        }
        row |= progress_measures(model, data, probe=probe)
        steps.append(step)
        rows.append(row)
    names = list(dict.fromkeys(k for row in rows for k in row))
    measures = {name: [row.get(name) for row in rows] for name in names}
    return Dynamics(steps, measures, {"run_dir": str(run_dir), "probe": probe})


def run_dynamics(
    run_dir: str | Path,
    demos: str | Path | None = None,
    *,
    probe: bool = True,
    show_progress: bool = True,
) -> Dynamics:
    """:func:`training_dynamics` of a run, with the held-out data found from the run
    itself (``dtlens dynamics``): its TrainConfig and demonstrations file (recorded in
    the checkpoints' metadata, or ``demos``) give the validation split whose
    decision-square windows the decision loss and the probes read.

    Raises:
        CheckpointError: no ``step_k`` checkpoints, or the recorded demonstrations file
            is gone.
        ConfigError: the checkpoints name no demonstrations file and ``demos`` is None,
            or the run has no validation split.
    """
    from dtlens.data.minari_bridge import load_demonstrations
    from dtlens.training.config import TrainConfig
    from dtlens.training.pipeline import make_samplers
    from dtlens.training.run_dirs import STATE_JSON

    checkpoints = checkpoint_steps(run_dir)
    state = json.loads((checkpoints[-1][1] / STATE_JSON).read_text())
    demos_path = demos if demos is not None else _data_file(state)
    if demos_path is None:
        raise ConfigError(
            f"the checkpoints in {run_dir} do not name their demonstrations; pass --demos"
        )
    config = TrainConfig.from_dict(state["train_config"])
    data = load_demonstrations(demos_path)  # an .npz file or 'minari:DATASET_ID'
    _, val = make_samplers(data, config)
    if val is None:
        raise ConfigError("the run has no validation split (val_fraction=0): nothing held out")
    decisions = DecisionData.from_demonstrations(data, val)
    return training_dynamics(run_dir, decisions, probe=probe, show_progress=show_progress)


def _data_file(state: dict) -> Path | None:
    try:
        name = state["metadata"]["data"]["file"]
    except (KeyError, TypeError):
        return None
    path = Path(name)
    if not path.exists():
        raise CheckpointError(
            f"the run's demonstrations {name!r} are not there any more; pass --demos"
        )
    return path
