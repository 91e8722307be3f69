"""The inputs of causal scrubbing: windows whose features are known, and a per-input metric.

Causal scrubbing resamples inputs that a hypothesis calls equivalent, so it needs a
dataset (:class:`ScrubbingDataset`): a :class:`~dtlens.model.TrajectoryBatch` of
windows and, per window, the value of every feature a claim may name (instruction,
layout, RTG, ...). :func:`memory_dataset` builds the Memory task's: the window that
ends at the decision square in each of the four layouts, at a few RTGs, padded the way
the model expects.

The metric is scored against the *reference* input (the one whose output the
hypothesis explains), so it takes the logits and the reference rows' dataset indices:
``metric(logits [rows, pos, action], index [rows]) -> [rows]``.
:func:`decision_metric` is the natural one at the decision square: the logit of the
turn the model takes on the reference input minus the other turn's.

Examples:
    >>> from tests.conftest import build_model
    >>> model = build_model(n_ctx=26)
    >>> data = memory_dataset(model, rtgs=(0.9, 0.0))
    >>> len(data), data.features["layout"][:2], data.features["rtg"][:2]
    (8, ('key/top-key', 'key/top-ball'), (0.9, 0.9))
    >>> data.classes("instruction").tolist()
    [0, 0, 1, 1, 0, 0, 1, 1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dtlens.analysis.edits.scenarios import layout_batch
from dtlens.analysis.metrics import Action, state_token_position
from dtlens.analysis.scrubbing.hypothesis import ANY, IDENTITY, Feature
from dtlens.analysis.weights.embeddings import action_index, action_labels
from dtlens.env import SCENARIOS
from dtlens.errors import BatchError, HypothesisError
from dtlens.model.batch import TrajectoryBatch

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["DecisionMetric", "ScrubbingDataset", "decision_metric", "memory_dataset"]


@dataclass(frozen=True)
class ScrubbingDataset:
    """Windows and the features that claims may name (one value per window).

    Args:
        batch: N windows (one shape; padding, if any, the same in every window: a
            resampled edge carries another window's value into this one's positions).
        features: ``{name: N hashable values}`` (tuples, lists or 1-d tensors).

    Raises:
        BatchError: a feature of the wrong length, or windows padded differently.
        HypothesisError: a feature named ``"identity"`` or ``"any"`` (reserved).

    Examples:
        >>> from tests.conftest import build_batch
        >>> features = {"instruction": ("key", "ball", "key"), "rtg": (0.9, 0.9, 0.0)}
        >>> data = ScrubbingDataset(build_batch(batch_size=3), features)
        >>> data.classes("instruction").tolist(), data.classes(("instruction", "rtg")).tolist()
        ([0, 1, 0], [0, 1, 2])
    """

    batch: TrajectoryBatch
    features: Mapping[str, Sequence]

    def __post_init__(self) -> None:
        if not isinstance(self.batch, TrajectoryBatch):
            raise BatchError(f"batch must be a TrajectoryBatch, got {type(self.batch).__name__}.")
        n = self.batch.batch_size
        features = {}
        for name, values in self.features.items():
            if name in (IDENTITY, ANY):
                raise HypothesisError(
                    f"feature name {name!r} is reserved (it means every input is equivalent "
                    "only to itself / to every input); rename the feature."
                )
            if isinstance(values, Tensor):
                values = values.tolist()
            values = tuple(values)
            if len(values) != n:
                raise BatchError(
                    f"feature {name!r} has {len(values)} values for {n} windows; give one "
                    "value per window."
                )
            features[name] = values
        object.__setattr__(self, "features", features)
        mask = self.batch.padding_mask
        if mask is not None and not bool((mask == mask[:1]).all()):
            raise BatchError(
                "the windows are padded differently (padding_mask differs between rows); "
                "causal scrubbing moves values between windows position by position, so use "
                "windows of one length and padding (e.g. memory_dataset)."
            )

    def __len__(self) -> int:
        return self.batch.batch_size

    def classes(self, feature: Feature) -> Int[Tensor, " window"]:
        """The equivalence class of every window under ``feature`` (0, 1, ... in order
        of first appearance).

        Raises:
            HypothesisError: a feature the dataset does not have.
        """
        n = len(self)
        if feature == IDENTITY:
            return torch.arange(n)
        if feature == ANY:
            return torch.zeros(n, dtype=torch.long)
        names = (feature,) if isinstance(feature, str) else tuple(feature)
        missing = [name for name in names if name not in self.features]
        if missing:
            raise HypothesisError(
                f"feature(s) {missing} are not features of this dataset; it has "
                f"{sorted(self.features)} (or use 'identity' / 'any')."
            )
        keys = list(zip(*(self.features[name] for name in names), strict=True))
        ids: dict[tuple, int] = {}
        return torch.tensor([ids.setdefault(k, len(ids)) for k in keys], dtype=torch.long)


def memory_dataset(
    model: HookedDecisionTransformer,
    rtgs: Sequence[float] = (0.9, 0.0),
    layouts: Sequence[str] | None = None,
) -> ScrubbingDataset:
    """The Memory task at the decision square: every layout x RTG, with its features.

    Each window is :func:`~dtlens.analysis.edits.scenarios.layout_batch` of the layout
    (the route forward to the decision square, facing the wall), over the model's full
    context (``model.cfg.n_timesteps`` steps) and padded the way the model expects
    (``model.context_padding``), with the RTG at every step.

    Features: ``"instruction"`` and ``"top"`` (``"key"``/``"ball"``: the instruction
    object, and the target in the upper position), ``"layout"`` (``"key/top-ball"``)
    and ``"rtg"``.

    Args:
        model: the model the windows are for.
        rtgs: the RTGs (RTG-major order: every layout at ``rtgs[0]`` first).
        layouts: layout names (default the four).

    Examples:
        >>> import dtlens
        >>> memory_dataset(dtlens.load("memorydt"), rtgs=(0.9,)).features["top"]
        ('key', 'ball', 'key', 'ball')
    """
    chosen = [s for s in SCENARIOS if layouts is None or s.name in layouts]
    if layouts is not None and len(chosen) != len(set(layouts)):
        raise BatchError(f"unknown layouts in {list(layouts)}; use {[s.name for s in SCENARIOS]}.")
    if not rtgs or not chosen:
        raise BatchError("memory_dataset needs at least one RTG and one layout.")
    rows, features = [], {"instruction": [], "top": [], "layout": [], "rtg": []}
    for rtg in rtgs:
        for s in chosen:
            rows.append(layout_batch(s, rtg=float(rtg), n_steps=model.cfg.n_timesteps, model=model))
            for name, value in zip(
                features, (s.instruction, s.top, s.name, float(rtg)), strict=True
            ):
                features[name].append(value)
    return ScrubbingDataset(TrajectoryBatch.cat(rows).to(model.device), features)


@dataclass(frozen=True)
class DecisionMetric:
    """``logit(answer) - logit(wrong)`` at one step, the actions chosen per reference input.

    Attributes:
        name: a readable name.
        answer: per dataset window, the action whose logit counts positively.
        wrong: per window, the action it is compared against.
        timestep: the window's step whose state token is read (-1: the last).
        tokens_per_step: 3 for a decision transformer, 2 for a clone.
    """

    name: str
    answer: Int[Tensor, " window"]
    wrong: Int[Tensor, " window"]
    timestep: int = -1
    tokens_per_step: int = 3

    def __call__(
        self, logits: Float[Tensor, "row pos action"], index: Int[Tensor, " row"]
    ) -> Float[Tensor, " row"]:
        """The metric of each row, scored against window ``index[row]``."""
        pos = state_token_position(
            logits.shape[1], self.timestep, tokens_per_step=self.tokens_per_step
        )
        at = logits[:, pos]
        index = index.to(self.answer.device)
        a, b = self.answer[index].to(at.device), self.wrong[index].to(at.device)
        return at.gather(1, a[:, None])[:, 0] - at.gather(1, b[:, None])[:, 0]


def decision_metric(
    model: HookedDecisionTransformer,
    dataset: ScrubbingDataset,
    actions: tuple[Action, Action] = ("left", "right"),
    timestep: int = -1,
) -> DecisionMetric:
    """The logit difference of the model's own choice between two actions on each window.

    On every window of ``dataset`` the clean model prefers one of ``actions`` (at the
    decision square: the turn it takes); the metric of a run scored against that window
    is that action's logit minus the other's. Clean runs score positive; a run that
    turns the other way, negative.

    Raises:
        ConfigError: an action that is neither one of the model's action names nor an
            index in ``0..n_actions-1`` (:func:`~dtlens.analysis.weights.embeddings.action_index`).

    Examples:
        >>> import dtlens
        >>> model = dtlens.load("memorydt")
        >>> data = memory_dataset(model, rtgs=(0.9,))
        >>> metric = decision_metric(model, data)
        >>> metric.answer.tolist()  # the turn taken: left (0) or right (1), per layout
        [0, 1, 1, 0]
        >>> [round(v, 1) for v in metric(model(data.batch), torch.arange(4)).tolist()]
        [5.8, 6.3, 5.8, 6.6]
    """
    n_actions, continuous = model.cfg.n_actions, model.cfg.continuous_actions
    a, b = (action_index(x, n_actions, continuous) for x in actions)
    names = action_labels(n_actions, continuous)
    per = model.cfg.tokens_per_step
    with torch.no_grad():
        logits = model(dataset.batch.to(model.device))
    pos = state_token_position(logits.shape[1], timestep, model=model)
    prefer_a = (logits[:, pos, a] >= logits[:, pos, b]).cpu()
    answer = torch.where(prefer_a, a, b)
    wrong = torch.where(prefer_a, b, a)
    name = f"logit diff chosen - other of {names[a]}/{names[b]} at S[{timestep}]"
    return DecisionMetric(name, answer, wrong, timestep, per)
