"""`Section`: one finding of the report — its figures, its numbers and what they say.

Each finding of the MemoryDT post is computed by one function in
:mod:`dtlens.report.sections` returning a `Section`. The HTML report and the
stand-alone scripts in ``analyses/`` call the same functions, so a number in the
report and the number a script writes are the same computation.

Examples:
    >>> import plotly.graph_objects as go
    >>> s = Section("demo", "A demo", figures=[go.Figure()], numbers={"x": 1.0},
    ...             seed_saw="The seed saw x.", this_model="Here x = 1.0.")
    >>> s.to_json()["numbers"]
    {'x': 1.0}
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from dtlens.errors import DTLensError
from dtlens.files import write_atomic, write_text_atomic

__all__ = ["Section", "SectionImage", "round_value", "write_section"]


@dataclass(frozen=True)
class SectionImage:
    """A picture a section shows under its figures (e.g. an animated GIF), embedded in
    the HTML page as a ``data:`` URI and written beside the section's other files.

    Attributes:
        data: the encoded image (GIF, PNG, ...).
        mime: its media type, e.g. ``"image/gif"``.
        caption: shown under the image (and its ``alt`` text).
        filename: its file name when written (letters, digits, ``.``, ``_``, ``-``).

    Examples:
        >>> SectionImage(b"GIF89a", "image/gif", "a run", "run.gif").data_uri()
        'data:image/gif;base64,R0lGODlh'
    """

    data: bytes
    mime: str
    caption: str = ""
    filename: str = "image"

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise DTLensError(f"SectionImage.data must be bytes, got {type(self.data).__name__}")
        if not re.fullmatch(r"image/[a-z0-9.+-]+", self.mime):
            raise DTLensError(f"SectionImage.mime must be an image type, got {self.mime!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.filename):
            raise DTLensError(f"SectionImage.filename {self.filename!r} is not a plain file name")

    def data_uri(self) -> str:
        """``data:<mime>;base64,...`` for an ``<img src>``."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class Section:
    """One finding: figures plus the numbers behind them and two short explanations.

    Attributes:
        key: short identifier (file names, anchors), e.g. ``"set_routine"``.
        title: heading shown in the report.
        figures: plotly figures, shown in order.
        numbers: JSON-serialisable results (the report prints them; tests read them).
        seed_saw: what the MemoryDT post reported for this finding.
        this_model: what this model shows, written from ``numbers``.
        images: pictures shown after the figures (:class:`SectionImage`, e.g. GIFs).
    """

    key: str
    title: str
    figures: list[go.Figure] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seed_saw: str = ""
    this_model: str = ""
    images: list[SectionImage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The section without its figures, JSON-ready; non-finite numbers raise."""
        _check_finite(self.numbers, self.key)
        return {
            "key": self.key,
            "title": self.title,
            "numbers": self.numbers,
            "seed_saw": self.seed_saw,
            "this_model": self.this_model,
        }


def round_value(value: Any) -> float:
    """A number for a section's JSON: a float (from a tensor, an array scalar, an int)
    rounded to four decimals, without a negative zero.

    Examples:
        >>> round_value(0.123456), round_value(-0.00001), round_value(2)
        (0.1235, 0.0, 2.0)
    """
    return round(float(value), 4) + 0.0


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise DTLensError(f"section {where!r} produced a non-finite number: {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_finite(item, f"{where}[{index}]")


def write_section(section: Section, out_dir: str | Path) -> list[Path]:
    """Write a section's numbers (``KEY.json``), figures (``KEY_N.html``) and images
    (``KEY_FILENAME``) to ``out_dir``.

    Figures are standalone HTML files with plotly.js inlined (they open offline).
    Every file is written atomically (:func:`dtlens.files.write_text_atomic`): an
    interrupted write leaves the earlier file, never a part.

    Examples:
        >>> paths = write_section(section, "out/")  # doctest: +SKIP
    """
    out = Path(out_dir)
    written = [write_text_atomic(out / f"{section.key}.json", _json_text(section))]
    for index, figure in enumerate(section.figures):
        html = figure.to_html(include_plotlyjs=True, full_html=True)
        written.append(write_text_atomic(out / f"{section.key}_{index}.html", html))
    for image in section.images:
        written.append(write_atomic(out / f"{section.key}_{image.filename}", image.data))
    return written


def _json_text(section: Section) -> str:
    return json.dumps(section.to_json(), indent=2) + "\n"
