"""No misleading picture in the report: patching figures greyed out exactly when the
model's decision barely moves, and never on a model that uses the instruction.

- a model blind to the instruction (the tiny 9-step model with ``state_embed.weight``
  zeroed: clean and corrupt runs are identical) gets a patching section that runs
  (a pair with equal runs gets fractions of 0, not an error), whose instruction-swap
  figures are all greyed with the warning inside them, whose text says no circuit is
  read, and whose findings the verdict box cannot judge;
- the original checkpoint (the seed's model) gets no greyed figure in the patching and
  path-patching sections, and the verdict box says the seed's patching findings hold;
- ``ReportConfig.min_gap`` is the threshold (default the plotting one).
"""

from __future__ import annotations

import pytest
import torch
from plotly.colors import unlabel_rgb

import dtlens
from dtlens.plotting import patching as patching_plots
from dtlens.report.config import ReportConfig
from dtlens.report.sections import circuit, path_patching
from dtlens.report.sections import patching as patching_section
from dtlens.report.verdict import CANNOT_JUDGE, HOLDS, verdicts
from tests.conftest import ORIGINAL_DT, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _grey(colour: str) -> bool:
    rgb = (
        tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        if colour.startswith("#")
        else tuple(unlabel_rgb(colour))
    )
    return len(set(rgb)) == 1


def _facets(figure) -> list[tuple[str, bool]]:
    """Each heatmap's facet title and whether it is drawn on a grey scale."""
    layout = figure.layout.to_plotly_json()
    out = []
    for trace in figure.data:
        scale = layout[trace.coloraxis]["colorscale"] if trace.coloraxis else trace.colorscale
        out.append((trace.meta, all(_grey(c) for _, c in scale)))
    return out


def _warnings(figure) -> list[str]:
    return [a.text for a in figure.layout.annotations if "reyed out" in a.text]


def test_the_report_threshold_is_the_plotting_one():
    """The default is the plotting module's ``MIN_GAP`` (written out in the light config
    module); the caveat and the verdict rules read ``MIN_GAP`` itself; a given gap wins;
    a negative one raises."""
    assert ReportConfig().min_gap == patching_plots.MIN_GAP
    assert ReportConfig.from_dict(ReportConfig().to_dict()).min_gap == patching_plots.MIN_GAP
    assert ReportConfig(min_gap=2.0).min_gap == 2.0
    below = patching_plots.MIN_GAP * 0.9
    assert patching_section.instruction_blind_caveat([below], "S5", "S9") != ""
    assert patching_section.instruction_blind_caveat([patching_plots.MIN_GAP], "S5", "S9") == ""
    with pytest.raises(dtlens.errors.ConfigError, match="min_gap"):
        ReportConfig(min_gap=-1.0)


@pytest.fixture(scope="module")
def blind():
    torch.manual_seed(0)
    model = build_model(n_ctx=26)
    with torch.no_grad():
        model.state_embed.weight.zero_()  # every observation embeds to the same vector
    return model


def test_a_model_blind_to_the_instruction_is_greyed_out(blind):
    section = patching_section.run(blind, ReportConfig())
    n = section.numbers
    assert n["instruction_swap_gap"] == {"RTG 0.9": 0.0, "RTG 0": 0.0}
    for row in n["instruction_swap_pairs"]:
        assert row["clean_logit_diff"] == row["corrupt_logit_diff"]
    for table in n["instruction_swap_tables"].values():  # equal runs: 0, not an error
        assert torch.tensor(table["resid_pre"]).abs().max() == 0
    swap_figures = section.figures[:3]
    for figure in swap_figures:
        assert [grey for _, grey in _facets(figure)] == [True] * 8
        [warning] = _warnings(figure)
        assert "differ by 0 on average (under 0.5)" in warning
    assert section.this_model.startswith("The instruction swap moves the decision at S9 by")
    assert "no circuit is read from them" in section.this_model
    path = path_patching.run(blind, ReportConfig())
    assert path.figures == [] and path.numbers["instruction_gap"] == 0.0
    found = circuit.run(blind, ReportConfig())
    assert found.figures == []
    judged = verdicts({s.key: s.to_json()["numbers"] for s in (section, path, found)})
    assert [(v.key, v.verdict) for v in judged] == [
        ("patching", CANNOT_JUDGE),
        ("patching", CANNOT_JUDGE),  # the RTG change moves it by < 0.5 too
        ("path_patching", CANNOT_JUDGE),
        ("circuit", CANNOT_JUDGE),
    ]


def test_the_threshold_is_configurable(blind):
    """RTG-change pairs move the blind model's decision by ~0.08 logits: greyed at the
    default, drawn at a threshold under that."""
    default = patching_section.run(blind, ReportConfig())
    gap = default.numbers["rtg_change_gap"]
    assert 0 < gap < 0.5
    assert all(grey for _, grey in _facets(default.figures[3]))
    loose = patching_section.run(blind, ReportConfig(min_gap=gap / 2))
    assert not any(grey for _, grey in _facets(loose.figures[3]))
    assert _warnings(loose.figures[3]) == []
    assert all(grey for _, grey in _facets(loose.figures[0]))  # the swap still moves nothing


@pytest.mark.skipif(not ORIGINAL_DT.exists(), reason=f"{ORIGINAL_DT} is absent (../shared)")
def test_the_original_checkpoint_is_not_greyed_out():
    model = dtlens.load(ORIGINAL_DT).eval()
    section = patching_section.run(model, ReportConfig())
    assert min(section.numbers["instruction_swap_gap"].values()) > 5
    for figure in section.figures:
        assert not any(grey for _, grey in _facets(figure)), figure.layout.title.text
        assert _warnings(figure) == []
    assert section.numbers["weak_pairs"] == []
    path = path_patching.run(model, ReportConfig())
    assert path.figures and path.numbers["instruction_gap"] > 5
    assert all(_warnings(f) == [] for f in path.figures)
    judged = verdicts({s.key: s.to_json()["numbers"] for s in (section, path)})
    assert [v.verdict for v in judged] == [HOLDS, HOLDS, HOLDS]
