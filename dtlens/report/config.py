"""`ReportConfig`: how much work each report section does (validated).

Examples:
    >>> ReportConfig(calibration_episodes=20).rtgs[:3]
    (0.0, 0.1, 0.2)
"""

from __future__ import annotations

from dataclasses import dataclass

from dtlens.errors import ConfigError

__all__ = ["ReportConfig"]


@dataclass(frozen=True)
class ReportConfig:
    """Sizes and seeds of the report's computations.

    Args:
        max_steps: episode length of the Memory env (the seed's data used 50).
        high_rtg: the "succeed" return-to-go (the seed used 0.9).
        low_rtg: the "fail" return-to-go (0.0).
        rtgs: the RTG grid of the calibration curve.
        calibration_episodes: episodes per RTG (spread over the 4 layouts).
        random_walks: off-routine walks per layout for the RTG-0 entropy finding.
        seed: seed of every random choice in the report.
    """

    max_steps: int = 50
    high_rtg: float = 0.9
    low_rtg: float = 0.0
    rtgs: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    calibration_episodes: int = 100
    random_walks: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_steps", "calibration_episodes", "random_walks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"ReportConfig.{name}={value!r} must be a positive int.")
        if not self.rtgs:
            raise ConfigError("ReportConfig.rtgs is empty; give at least one RTG.")
        if self.high_rtg <= self.low_rtg:
            raise ConfigError(
                f"ReportConfig.high_rtg={self.high_rtg} must exceed low_rtg={self.low_rtg}."
            )
