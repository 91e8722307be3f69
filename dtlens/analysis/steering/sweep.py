"""Does steering retarget the agent? A sweep over hooks x coefficients, measured in play.

Background:
    The seed asked whether the target could be retargeted independently of the RTG.
    :func:`steering_sweep` answers it by behaviour: for each hook and coefficient it
    plays the Memory task (:func:`~dtlens.training.evaluate.rollout`) inside
    :func:`~dtlens.analysis.steering.steer`, at the "succeed" RTG and the "fail" RTG,
    and records where every episode ends: at the object matching the instruction
    (``match``: success), at the other object (``other``), or at neither (truncated).

    The direction of a two-valued layout fact (``instruction``: key -> ball;
    ``target_side``: top -> bottom) is pushed *towards the other value* in every
    episode: ``+coef * direction`` in layouts with value 0, ``-coef * direction`` in
    layouts with value 1 (each sign in its own batch of episodes). Then

    - the **retarget rate** of a cell is the share of episodes at the first (high)
      RTG that end at the other object;
    - the **RTG still controls success** when, steered, the high RTG reaches the new
      target and the low RTG does not, as unsteered it reaches the instructed one and
      the low RTG does not: ``rtg_control`` is ``P(new target | high) - P(new target |
      low)`` steered, against ``P(success | high) - P(success | low)`` unsteered.

    Greedy play (``temperature=0``, the default) is deterministic, so one episode per
    layout is exact.

Example:
    >>> dirs = fact_directions(model, data, "instruction")  # doctest: +SKIP
    >>> result = steering_sweep(model, dirs, "instruction")  # doctest: +SKIP
    >>> result.retarget_rate["blocks.1.hook_resid_mid"]  # doctest: +SKIP
    {0.5: 0.0, 1.0: 1.0, 2.0: 1.0, 4.0: 0.5}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from dtlens.analysis.probes.data import FACT_VALUES
from dtlens.analysis.steering.hooks import Positions, steer
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, Scenario
from dtlens.errors import ConfigError
from dtlens.torch_context import torch_threads

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["OUTCOMES", "SteeringResult", "layout_value", "steering_sweep"]

#: where an episode ends.
OUTCOMES = ("match", "other", "neither")


def layout_value(scenario: Scenario, fact: str) -> int:
    """A layout's value of a two-valued layout fact (``instruction``: key 0, ball 1;
    ``target_side``: top 0, bottom 1).

    Raises:
        ConfigError: a fact that is not a property of the layout.
    """
    if fact == "instruction":
        return FACT_VALUES[fact].index(scenario.instruction)
    if fact == "target_side":
        return FACT_VALUES[fact].index(scenario.target)
    raise ConfigError(f"fact={fact!r}: steering sweeps take 'instruction' or 'target_side'.")


@dataclass(frozen=True)
class SteeringResult:
    """Outcomes of play over hooks x coefficients x RTGs.

    Attributes:
        fact: the fact whose direction was added.
        hooks: the hooks steered.
        coefficients: the coefficients.
        rtgs: the RTGs played; the first is the "succeed" RTG the retarget rate is read at.
        positions: the positions steered.
        outcomes: ``[hook, coef, rtg, 3]`` shares of episodes ending at the matching
            object, the other object, neither (:data:`OUTCOMES`); NaN for cells not
            played at that RTG (see :func:`steering_sweep`'s ``every_cell``).
        unsteered: ``[rtg, 3]`` the same without steering.
        n_episodes: episodes per (cell, RTG).
        direction_norms: the L2 norm of each hook's direction.
    """

    fact: str
    hooks: tuple[str, ...]
    coefficients: tuple[float, ...]
    rtgs: tuple[float, ...]
    positions: Positions
    outcomes: np.ndarray
    unsteered: np.ndarray
    n_episodes: int
    direction_norms: tuple[float, ...]

    def rate(self, outcome: str, rtg_index: int = 0) -> np.ndarray:
        """``[hook, coef]`` share of episodes ending with ``outcome`` at ``rtgs[rtg_index]``."""
        return self.outcomes[:, :, rtg_index, OUTCOMES.index(outcome)]

    @property
    def retarget_rate(self) -> dict[str, dict[float, float]]:
        """``{hook: {coef: share of episodes at the other object}}`` at the first RTG."""
        other = self.rate("other")
        return {
            h: {c: float(other[i, j]) for j, c in enumerate(self.coefficients)}
            for i, h in enumerate(self.hooks)
        }

    def best(self) -> tuple[str, float]:
        """The cell with the highest retarget rate (ties: the smaller coefficient, then
        the earlier hook)."""
        i, j = _best_cell(self.rate("other"), self.coefficients)
        return self.hooks[i], self.coefficients[j]

    def _cell(self, hook: str | None, coef: float | None) -> tuple[int, int]:
        if hook is None or coef is None:
            hook, coef = self.best()
        if hook not in self.hooks or coef not in self.coefficients:
            raise ConfigError(f"({hook!r}, {coef}) is not a cell of this sweep.")
        return self.hooks.index(hook), self.coefficients.index(coef)

    def success_at_rtg(self, hook: str | None = None, coef: float | None = None) -> dict:
        """``{"unsteered": {rtg: success}, "steered": {rtg: success}}`` (default: :meth:`best`)."""
        i, j = self._cell(hook, coef)
        m = OUTCOMES.index("match")
        return {
            "unsteered": {r: float(self.unsteered[k, m]) for k, r in enumerate(self.rtgs)},
            "steered": {r: float(self.outcomes[i, j, k, m]) for k, r in enumerate(self.rtgs)},
        }

    def new_target_at_rtg(self, hook: str | None = None, coef: float | None = None) -> dict:
        """``{rtg: share of steered episodes reaching the other (new) object}``."""
        i, j = self._cell(hook, coef)
        o = OUTCOMES.index("other")
        return {r: float(self.outcomes[i, j, k, o]) for k, r in enumerate(self.rtgs)}

    def rtg_control(self, hook: str | None = None, coef: float | None = None) -> dict[str, float]:
        """How much the RTG decides whether the target is reached, first RTG minus last:
        ``unsteered``: success; ``steered``: reaching the new target."""
        success = self.success_at_rtg(hook, coef)["unsteered"]
        new = self.new_target_at_rtg(hook, coef)
        first, last = self.rtgs[0], self.rtgs[-1]
        return {"unsteered": success[first] - success[last], "steered": new[first] - new[last]}

    def to_dict(self) -> dict[str, Any]:
        """The numbers, JSON-ready (coefficients and RTGs as ``%g`` strings)."""
        hook, coef = self.best()

        def keyed(table: dict) -> dict[str, float | None]:
            return {f"{k:g}": _round(v) for k, v in table.items()}

        def grid(values: np.ndarray) -> dict[str, dict[str, float | None]]:
            return {
                h: {f"{c:g}": _round(v) for c, v in zip(self.coefficients, row, strict=True)}
                for h, row in zip(self.hooks, values, strict=True)
            }

        success = self.success_at_rtg(hook, coef)
        norms = dict(zip(self.hooks, self.direction_norms, strict=True))
        positions = self.positions
        if not isinstance(positions, str | int):
            positions = list(positions)
        return {
            "fact": self.fact,
            "positions": positions,
            "rtgs": list(self.rtgs),
            "n_episodes": self.n_episodes,
            "direction_norm": {h: round(n, 4) for h, n in norms.items()},
            "retarget_rate": grid(self.rate("other")),
            "neither_at_high_rtg": grid(self.rate("neither")),
            "new_target_at_low_rtg": grid(self.rate("other", len(self.rtgs) - 1)),
            "best": {"hook": hook, "coef": coef},
            "success_at_rtg": {k: keyed(v) for k, v in success.items()},
            "new_target_at_rtg": keyed(self.new_target_at_rtg(hook, coef)),
            "rtg_control": {k: _round(v) for k, v in self.rtg_control(hook, coef).items()},
        }

    def plot(self, title: str | None = None) -> go.Figure:
        """Heatmaps of the retarget rate (first RTG) and of the new target reached at the
        last RTG, hooks x coefficients (:func:`dtlens.plotting.steering.plot_steering`)."""
        from dtlens.plotting.steering import plot_steering

        return plot_steering(self, title=title)


def steering_sweep(
    model: HookedDecisionTransformer,
    directions: Mapping[str, Tensor],
    fact: str,
    coefficients: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    rtgs: Sequence[float] = (0.9, 0.0),
    positions: Positions = "last",
    temperature: float = 0.0,
    episodes_per_layout: int = 1,
    max_steps: int = 50,
    seed: int = 0,
    every_cell: bool = False,
    min_retarget: float = 0.5,
    num_threads: int | None = 1,
) -> SteeringResult:
    """Play with ``coef * direction`` added at each hook, pushing every episode's ``fact``
    towards its other value; count where the episodes end.

    Args:
        model: the model.
        directions: ``{hook: direction}`` from value 0 to value 1 of ``fact``
            (e.g. :func:`~dtlens.analysis.steering.fact_directions`).
        fact: ``"instruction"`` or ``"target_side"``.
        coefficients: the coefficients swept (1 = the class means' gap).
        rtgs: the RTGs played; the first is the one the retarget rate is read at.
        positions: the positions steered at every step (default ``"last"``: the state
            token whose logits give the action).
        temperature: rollout temperature (0 = greedy).
        episodes_per_layout: episodes per layout (seeds ``seed + i``).
        max_steps: the episode limit.
        seed: the first episode seed.
        every_cell: play the later RTGs in every cell; by default only in the cells
            that retarget at least ``min_retarget`` of the episodes at the first RTG
            (and the best cell): elsewhere there is no new target whose RTG control to
            measure (their outcomes are NaN).
        min_retarget: see ``every_cell``.
        num_threads: torch intra-op threads while playing (restored afterwards; None
            leaves them). Each step forwards a few short windows, which a second thread
            only slows, many times over on a busy machine.

    Raises:
        ConfigError: no directions or coefficients, an unknown fact.
        HookNameError: an unknown hook.

    Example:
        >>> result = steering_sweep(model, dirs, "target_side", (1.0,))  # doctest: +SKIP
        >>> result.success_at_rtg()  # doctest: +SKIP
        {'unsteered': {0.9: 1.0, 0.0: 0.0}, 'steered': {0.9: 0.0, 0.0: 0.0}}
    """
    from dtlens.training.evaluate import rollout

    if not directions or not coefficients or not rtgs:
        raise ConfigError("a steering sweep needs directions, coefficients and RTGs.")
    for s in SCENARIOS:
        layout_value(s, fact)  # validates the fact
    hooks = tuple(directions)
    model.check_hook_names(hooks)
    coefs = tuple(float(c) for c in coefficients)
    per_layout = range(episodes_per_layout)
    groups = [
        (sign, [s for s in SCENARIOS for _ in per_layout if layout_value(s, fact) == v])
        for v, sign in ((0, 1.0), (1, -1.0))
    ]
    n = sum(len(layouts) for _, layouts in groups)

    def play(rtg: float, layouts: list[Scenario]) -> np.ndarray:
        result = rollout(
            model,
            MEMORY_ENV_ID,
            float(rtg),
            n_episodes=len(layouts),
            seeds=seed,
            layouts=layouts,
            temperature=temperature,
            max_steps=max_steps,
        )
        other = result.terminated & ~result.success
        return np.array([result.success.sum(), other.sum(), (~result.terminated).sum()])

    with torch_threads(num_threads):
        unsteered = np.stack(
            [sum(play(r, layouts) for _, layouts in groups) / n for r in rtgs]
        ).astype(np.float64)
        outcomes = np.full((len(hooks), len(coefs), len(rtgs), len(OUTCOMES)), np.nan)

        def steered(i: int, j: int, k: int) -> None:
            direction = torch.as_tensor(directions[hooks[i]]).float()
            counts = np.zeros(len(OUTCOMES))
            for sign, layouts in groups:
                with steer(model, hooks[i], sign * direction, coefs[j], positions):
                    counts += play(rtgs[k], layouts)
            outcomes[i, j, k] = counts / n

        cells = [(i, j) for i in range(len(hooks)) for j in range(len(coefs))]
        for i, j in cells:
            steered(i, j, 0)
        other = outcomes[:, :, 0, OUTCOMES.index("other")]
        best = _best_cell(other, coefs)
        later = cells if every_cell else [c for c in cells if other[c] >= min_retarget or c == best]
        for i, j in later:
            for k in range(1, len(rtgs)):
                steered(i, j, k)
    return SteeringResult(
        fact=fact,
        hooks=hooks,
        coefficients=coefs,
        rtgs=tuple(float(r) for r in rtgs),
        positions=positions,
        outcomes=outcomes,
        unsteered=unsteered,
        n_episodes=n,
        direction_norms=tuple(float(torch.as_tensor(directions[h]).norm()) for h in hooks),
    )


def _best_cell(other: np.ndarray, coefs: Sequence[float]) -> tuple[int, int]:
    """``(hook, coef)`` indices of the highest retarget rate; ties: smaller |coef|, earlier hook."""
    cells = [(i, j) for i in range(other.shape[0]) for j in range(other.shape[1])]
    return max(cells, key=lambda c: (other[c], -abs(coefs[c[1]]), -c[0]))


def _round(value: float) -> float | None:
    """4 decimals; None for a cell not played (NaN), so the numbers stay JSON-finite."""
    return None if not np.isfinite(value) else round(float(value), 4) + 0.0
