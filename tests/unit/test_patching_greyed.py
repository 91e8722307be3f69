"""No misleading picture: plot_patching greys a result out exactly when its clean and
corrupt metrics differ by less than the threshold (hand-made PatchingResults).

A greyed figure uses only grey colours (r = g = b) and carries a warning annotation
stating the gap; a normal one uses the diverging scale and no warning. Bars carry
colour strings (plotly.js warns "Invalid color specifier" for numbers).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from plotly.colors import get_colorscale, unlabel_rgb

from dtlens.analysis.patching.results import PatchingResult
from dtlens.plotting import patching as patching_plots
from dtlens.plotting import plot_patching, style

LABELS = {"layer": ["0", "1"], "pos": ["R1", "S1", "A1"], "pair": ["a", "b"], "head": ["H0"]}


def _result(axes: tuple[str, ...], clean=None, corrupt=None) -> PatchingResult:
    shape = [len(LABELS[a]) for a in axes]
    values = torch.linspace(-1.0, 2.0, int(np.prod(shape))).reshape(shape)
    info = {} if clean is None else {"clean_metric": clean, "corrupt_metric": corrupt}
    return PatchingResult(values, axes, {a: LABELS[a] for a in axes}, "restored", info)


def _rgb(colour: str) -> tuple[float, ...]:
    if colour.startswith("#"):
        return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return tuple(unlabel_rgb(colour))


def _grey(scale) -> bool:
    return all(len(set(_rgb(c))) == 1 for _, c in scale)


def _warnings(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations if "reyed out" in a.text]


@pytest.mark.parametrize(
    ("clean", "corrupt", "min_gap", "greyed"),
    [
        (torch.tensor([1.0, 0.3]), torch.tensor([0.8, 0.2]), None, True),  # mean gap 0.15
        (torch.tensor([1.0, 0.3]), torch.tensor([0.8, 0.2]), 0.1, False),
        (torch.tensor([4.0, -3.0]), torch.tensor([-4.0, 3.0]), None, False),  # mean gap 7
        ([1.0], [0.5], 0.5, False),  # gap == threshold: drawn (strictly under greys)
        ([1.0], [0.5], 0.5000001, True),
        (torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), 0.6, True),  # mean 0.5 < 0.6
        (torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), 0.4, False),  # one pair at 0 gap
    ],
)
def test_heatmap_greyed_exactly_below_the_mean_gap(clean, corrupt, min_gap, greyed):
    fig = plot_patching(_result(("layer", "pos"), clean, corrupt), min_gap=min_gap)
    heat = fig.data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), _result(("layer", "pos")).values.numpy())
    assert _grey(heat.colorscale) == greyed
    warnings = _warnings(fig)
    if greyed:
        gap = float(np.mean(np.abs(np.asarray(clean) - np.asarray(corrupt))))
        threshold = patching_plots.MIN_GAP if min_gap is None else min_gap
        [text] = warnings
        assert f"by {gap:.3g} on average (under {threshold:g})" in text
        assert "not a circuit" in text
    else:
        assert warnings == []
        assert [c for _, c in heat.colorscale] == [c for _, c in get_colorscale(style.DIVERGING)]


def test_without_clean_and_corrupt_metrics_nothing_is_greyed():
    fig = plot_patching(_result(("layer", "pos")))
    assert not _grey(fig.data[0].colorscale) and _warnings(fig) == []


def test_the_default_threshold_is_read_at_call_time(monkeypatch):
    weak = _result(("layer", "pos"), [0.3], [0.0])
    assert patching_plots.MIN_GAP == 0.5 and _warnings(plot_patching(weak))
    monkeypatch.setattr(patching_plots, "MIN_GAP", 0.2)
    assert _warnings(plot_patching(weak)) == []
    assert _warnings(plot_patching(weak, min_gap=0)) == []


def test_bars_are_colour_strings_and_grey_when_greyed():
    fig = plot_patching(_result(("pos",)))
    colours = list(fig.data[0].marker.color)
    assert all(isinstance(c, str) for c in colours)  # numbers make plotly.js warn per bar
    low, _, high = (_rgb(c) for c in colours)  # values -1, 0.5, 2 around zmid 0
    assert low[0] > low[2] and high[2] > high[0]  # red below zmid, blue above
    assert high == _rgb(get_colorscale(style.DIVERGING)[-1][1])  # the largest |value| is the end
    greyed = plot_patching(_result(("pos",), [0.1], [0.0]))
    assert list(greyed.data[0].marker.color) == [style.GREYED_COLOUR] * 3
    assert len(_warnings(greyed)) == 1


def test_pair_facets_are_judged_one_by_one():
    fig = plot_patching(_result(("pair", "layer", "pos"), [3.0, 0.1], [0.0, 0.0]))
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis2"]
    assert not _grey(fig.layout.coloraxis.colorscale)
    assert _grey(fig.layout.coloraxis2.colorscale) and fig.layout.coloraxis2.showscale is False
    [note] = _warnings(fig)  # inside the weak facet only, stating its gap
    assert "gap 0.1" in note
    [annotation] = [a for a in fig.layout.annotations if a.text == note]
    assert (annotation.xref, annotation.yref) == ("x2 domain", "y2 domain")


def test_all_weak_facets_grey_the_whole_figure():
    fig = plot_patching(_result(("pair", "layer", "pos"), [0.3, 0.1], [0.0, 0.0]))
    assert {t.coloraxis for t in fig.data} == {"coloraxis"}
    assert _grey(fig.layout.coloraxis.colorscale)
    [text] = _warnings(fig)
    assert re.search(r"by 0\.2 on average \(under 0\.5\)", text)


def test_other_facets_are_judged_by_the_mean_gap():
    """A first axis that is not "pair": the metrics are per batch row, not per facet."""
    strong = plot_patching(_result(("layer", "head", "pos"), [3.0, 0.1], [0.0, 0.0]))
    assert {t.coloraxis for t in strong.data} == {"coloraxis"} and _warnings(strong) == []
    weak = plot_patching(_result(("layer", "head", "pos"), [0.3, 0.1], [0.0, 0.0]))
    assert _grey(weak.layout.coloraxis.colorscale) and len(_warnings(weak)) == 1


def test_metric_gaps_reads_tensors_lists_and_scalars():
    assert patching_plots.metric_gaps(_result(("pos",))) is None
    assert patching_plots.metric_gaps(_result(("pos",), 2.0, 0.5)) == [1.5]
    gaps = patching_plots.metric_gaps(_result(("pos",), torch.tensor([1.0, -1.0]), [0.0, 1.0]))
    assert gaps == [1.0, 2.0]
