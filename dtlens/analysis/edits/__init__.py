"""Inputs to compare: observation and RTG edits, the Memory task's patching pairs, greedy play.

- :mod:`~dtlens.analysis.edits.observations`: edits of a batch's one-hot views
  (:func:`set_cell`, :func:`swap_instruction`, :func:`flip_targets`, :func:`compose`,
  :func:`patch_observation`) and :func:`set_rtg`;
- :mod:`~dtlens.analysis.edits.scenarios`: the seed's clean/corrupt pairs in each layout
  (:func:`instruction_swap_pair`, :func:`rtg_pair`, :func:`layout_batch`), padded the
  way the model asks (``model=``);
- :mod:`~dtlens.analysis.edits.routine`: the model's greedy routine in one layout
  (:func:`play_greedy`).

Example:
    >>> pair = instruction_swap_pair("key/top-ball", padding="mask")  # or model=model
    >>> bool((pair.clean.obs != pair.corrupt.obs).any())
    True
"""

from dtlens.analysis.edits.observations import (
    ObservationEdit,
    compose,
    flip_targets,
    patch_observation,
    set_cell,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis.edits.routine import GreedyRun, history_batch, play_greedy
from dtlens.analysis.edits.scenarios import (
    PatchingPair,
    all_layouts,
    instruction_swap_pair,
    layout_batch,
    model_instruction_pairs,
    rtg_pair,
)

__all__ = [
    "GreedyRun",
    "ObservationEdit",
    "PatchingPair",
    "all_layouts",
    "compose",
    "flip_targets",
    "history_batch",
    "instruction_swap_pair",
    "layout_batch",
    "model_instruction_pairs",
    "patch_observation",
    "play_greedy",
    "rtg_pair",
    "set_cell",
    "set_rtg",
    "swap_instruction",
]
