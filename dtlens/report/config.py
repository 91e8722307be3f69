"""`ReportConfig`: how much work each report section does (validated).

``dtlens report`` derives its flags from these fields (and their docs); the module
imports no torch or plotly.

Examples:
    >>> ReportConfig(calibration_episodes=20).rtgs[:3]
    (0.0, 0.1, 0.2)
    >>> ReportConfig.from_dict({"rtgs": [0.0, 0.9], "seed": 1}).to_dict()["rtgs"]
    [0.0, 0.9]
    >>> from dtlens.plotting.patching import MIN_GAP
    >>> ReportConfig().min_gap == MIN_GAP, ReportConfig(min_gap=2.0).min_gap
    (True, 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass

from dtlens.config_io import ConfigIO, check, check_int, check_number
from dtlens.errors import ConfigError

__all__ = ["ReportConfig"]


@dataclass(frozen=True)
class ReportConfig(ConfigIO):
    """Sizes and seeds of the report's computations.

    Args:
        max_steps: episode length of the Memory env (the seed's data used 50).
        high_rtg: the "succeed" return-to-go (the seed used 0.9).
        low_rtg: the "fail" return-to-go (0.0).
        rtgs: the RTG grid of the calibration curve.
        calibration_episodes: episodes per RTG (spread over the 4 layouts).
        random_walks: off-routine walks per layout for the RTG-0 entropy finding.
        seed: seed of every random choice in the report.
        min_gap: patching whose clean and corrupt logit differences are closer than
            this (logits, mean over the pairs of a figure or facet) is drawn greyed
            out and judged "cannot be judged" in the verdict box (default
            :data:`dtlens.plotting.patching.MIN_GAP`, written out here so that this
            module and ``dtlens report --help`` import no plotly; a test keeps them equal).
    """

    max_steps: int = 50
    high_rtg: float = 0.9
    low_rtg: float = 0.0
    rtgs: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    calibration_episodes: int = 100
    random_walks: int = 8
    seed: int = 0
    min_gap: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_steps", "calibration_episodes", "random_walks"):
            check_int(self, name)
        check_int(self, "seed", minimum=0)
        for name in ("high_rtg", "low_rtg"):
            check_number(self, name)
        rtgs = tuple(self.rtgs) if isinstance(self.rtgs, tuple | list) else None
        if rtgs == ():
            raise ConfigError("ReportConfig.rtgs is empty; give at least one RTG.")
        ok = rtgs is not None and all(isinstance(r, int | float) for r in rtgs)
        check(self, "rtgs", ok, "a list of numbers")
        object.__setattr__(self, "rtgs", tuple(float(r) for r in rtgs))
        check_number(self, "min_gap", 0.0)
        if self.high_rtg <= self.low_rtg:
            raise ConfigError(
                f"ReportConfig.high_rtg={self.high_rtg} must exceed low_rtg={self.low_rtg}."
            )
