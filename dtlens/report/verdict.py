"""The verdict box that opens the report: which of the seed's findings hold on this model.

Each finding of the MemoryDT post is judged from the numbers of the section that
reproduces it (``Section.numbers``, plain JSON), never from its text, by one small rule
stated in the verdict's ``because``:

- ``holds``: the numbers show what the seed saw;
- ``does not hold``: they show something else;
- ``cannot be judged``: they cannot decide it, e.g. the patching pairs' clean and
  corrupt decisions differ by less than the section's ``min_gap`` logits (the restored
  fractions would divide by almost nothing), or the section is missing pieces.

A finding whose section was not run is left out. The findings, their rules and
thresholds are in :mod:`dtlens.report.verdict_rules`; :func:`verdicts` applies them,
:func:`verdict_html` draws the box.

Examples:
    >>> numbers = {"congruence": {"grows_every_layer": {"left": True, "right": False}}}
    >>> [(v.key, v.verdict) for v in verdicts(numbers)]
    [('congruence', 'does not hold')]
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from dtlens.report.verdict_rules import CANNOT_JUDGE, DOES_NOT_HOLD, FINDINGS, HOLDS, Numbers

__all__ = [
    "CANNOT_JUDGE",
    "DOES_NOT_HOLD",
    "HOLDS",
    "Verdict",
    "verdict_html",
    "verdicts",
]


@dataclass(frozen=True)
class Verdict:
    """One finding of the seed, judged on this model.

    Attributes:
        key: the report section whose numbers decide it (its anchor on the page).
        finding: the seed's finding, in one sentence.
        verdict: :data:`HOLDS`, :data:`DOES_NOT_HOLD` or :data:`CANNOT_JUDGE`.
        because: the numbers behind the verdict.
    """

    key: str
    finding: str
    verdict: str
    because: str

    def to_json(self) -> dict[str, str]:
        """The verdict as a JSON-ready dict."""
        return asdict(self)


def verdicts(numbers: Mapping[str, Numbers]) -> list[Verdict]:
    """Judge every finding whose section is in ``numbers`` (section key -> its numbers).

    Examples:
        >>> cal = {"at_high_rtg": {"rtg": 0.9, "success_rate": 1.0},
        ...        "at_low_rtg": {"rtg": 0.0, "success_rate": 0.0}}
        >>> verdicts({"calibration": cal})[0].verdict
        'holds'
    """
    out = []
    for key, finding, rule in FINDINGS:
        if key in numbers:
            try:
                verdict, because = rule(numbers[key])
            except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as err:
                verdict, because = (
                    CANNOT_JUDGE,
                    f"the section's numbers lack what it needs ({err!r})",
                )
            out.append(Verdict(key, finding, verdict, because))
    return out


# ------------------------------------------------------------------------------- html
_CLASS = {HOLDS: "holds", DOES_NOT_HOLD: "fails", CANNOT_JUDGE: "unjudged"}


def verdict_html(items: Sequence[Verdict]) -> str:
    """The verdict box: one line per finding (verdict, finding, the numbers behind it).

    Examples:
        >>> box = verdict_html([Verdict("congruence", "It grows.", HOLDS, "left yes")])
        >>> "class='verdict holds'" in box and "href='#congruence'" in box
        True
    """
    if not items:
        return ""
    counts = {
        v: sum(item.verdict == v for item in items) for v in (HOLDS, DOES_NOT_HOLD, CANNOT_JUDGE)
    }
    rows = "".join(
        f"<li class='verdict {_CLASS[item.verdict]}'><span class='tag'>{html.escape(item.verdict)}"
        f"</span> <a href='#{html.escape(item.key)}'>{html.escape(item.finding)}</a> "
        f"<span class='because'>({html.escape(item.because)})</span></li>"
        for item in items
    )
    summary = ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count)
    return (
        "<div class='verdicts' id='verdict'><h2>Verdict: the seed's findings on this model</h2>"
        f"<p class='meta'>{html.escape(summary)}; each line is computed from its section's "
        f"numbers.</p><ul>{rows}</ul></div>"
    )
