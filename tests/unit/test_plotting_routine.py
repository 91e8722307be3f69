"""Small multiples of action probabilities: every panel holds its run's values, one colour bar.

Expectations are built by hand: each panel's z by explicit loops over the run's
``[step, action]`` table, its place in the grid by reading order, and the report
section's runs by playing every layout again with ``play_greedy``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from dtlens.analysis.edits.routine import play_greedy
from dtlens.env import ACTION_NAMES, SCENARIOS
from dtlens.errors import BatchError
from dtlens.plotting import plot_action_probability_grid, style
from dtlens.report.config import ReportConfig
from dtlens.report.sections import set_routine
from tests.conftest import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

#: two rows of four: short runs on top, runs of mixed lengths (up to max_steps=50) below
LENGTHS = [6, 6, 7, 6, 50, 9, 23, 1]
TITLES = [f"{s.name}, RTG {rtg}" for rtg in ("0.9", "0") for s in SCENARIOS]


def _runs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(n, 7, generator=g).softmax(-1) for n in LENGTHS]


def _step_labels(runs: list[torch.Tensor]) -> list[list[str]]:
    return [
        [f"{t + 1}: {ACTION_NAMES[int(run[t].argmax())]}" for t in range(len(run))] for run in runs
    ]


def _transposed(run: torch.Tensor) -> list[list[float]]:
    steps, actions = run.shape
    return [[float(run[t, a]) for t in range(steps)] for a in range(actions)]


def _domain_centre(fig: go.Figure, axis_ref: str) -> float:
    axis = fig.layout[f"xaxis{axis_ref[1:]}"]
    return (axis.domain[0] + axis.domain[1]) / 2


def test_each_panel_holds_its_run_transposed_in_reading_order():
    runs = _runs()
    steps = _step_labels(runs)
    fig = plot_action_probability_grid(runs, step_labels=steps, titles=TITLES)
    assert len(fig.data) == len(runs)
    for i, (run, trace) in enumerate(zip(runs, fig.data, strict=True)):
        assert trace.type == "heatmap"
        np.testing.assert_array_equal(np.asarray(trace.z), np.array(_transposed(run)))
        assert list(trace.x) == steps[i]
        assert list(trace.y) == list(ACTION_NAMES)
        # row = RTG (high first), column = layout: the i-th run sits at (i // 4, i % 4)
        (placed,) = fig.select_traces(row=i // 4 + 1, col=i % 4 + 1)
        assert placed is trace
    for axis in fig.select_yaxes():
        assert axis.autorange == "reversed"  # first action on top
        assert axis.type == "category"
    for axis in fig.select_xaxes():
        assert axis.type == "category"


def test_one_coloraxis_from_0_to_1_and_one_colour_bar():
    fig = plot_action_probability_grid(_runs(), titles=TITLES)
    layout = fig.layout.to_plotly_json()
    assert [key for key in layout if key.startswith("coloraxis")] == ["coloraxis"]
    coloraxis = fig.layout.coloraxis
    assert (coloraxis.cmin, coloraxis.cmax) == (0.0, 1.0)
    assert coloraxis.showscale is not False
    assert coloraxis.colorbar.title.text == "probability"
    expected = go.Figure(layout={"coloraxis": {"colorscale": style.SEQUENTIAL}})
    assert coloraxis.colorscale == expected.layout.coloraxis.colorscale
    for trace in fig.data:
        assert trace.coloraxis == "coloraxis"
        # no trace brings its own scale or bar, so the layout's bar is the only one
        assert trace.colorscale is None and trace.showscale is None
        assert trace.zmin is None and trace.zmax is None


def test_titles_name_layout_and_rtg_above_their_panel():
    runs = _runs()
    fig = plot_action_probability_grid(runs, titles=TITLES)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == TITLES
    assert "key/top-ball, RTG 0.9" in titles[1] and "ball/top-ball, RTG 0" in titles[7]
    for annotation, trace in zip(fig.layout.annotations, fig.data, strict=True):
        assert annotation.x == pytest.approx(_domain_centre(fig, trace.xaxis))
        panel_top = fig.layout[f"yaxis{trace.yaxis[1:]}"].domain[1]
        assert annotation.y == pytest.approx(panel_top) and annotation.yanchor == "bottom"
    default = plot_action_probability_grid(runs[:2], columns=2)
    assert [a.text for a in default.layout.annotations] == ["run 1", "run 2"]
    assert [list(t.x) for t in default.data] == [
        [str(t + 1) for t in range(n)] for n in LENGTHS[:2]
    ]


def test_values_written_only_in_short_runs_and_the_figure_grows_with_its_labels():
    runs = _runs()
    fig = plot_action_probability_grid(runs, max_text_steps=9)
    written = [bool(trace.texttemplate) for trace in fig.data]
    assert written == [n <= 9 for n in LENGTHS]
    never = plot_action_probability_grid(runs, max_text_steps=0)
    assert not any(trace.texttemplate for trace in never.data)
    auto = plot_action_probability_grid(runs)  # sized for a 1000 px page, 4 columns
    assert bool(auto.data[0].texttemplate) and not auto.data[4].texttemplate  # 6 vs 50 steps
    one_row = plot_action_probability_grid(runs[:4])
    two_rows = plot_action_probability_grid(runs)
    assert two_rows.layout.height > one_row.layout.height
    long_labels = [[f"{t + 1}: a long label" for t in range(len(r))] for r in runs[:4]]
    labelled = plot_action_probability_grid(runs[:4], step_labels=long_labels)
    assert labelled.layout.height > one_row.layout.height
    assert labelled.layout.margin.b > one_row.layout.margin.b  # room for the last row's


def test_bad_input_raises_batch_error():
    runs = _runs()
    logits = [torch.randn(3, 7)] * 2
    with pytest.raises(BatchError, match=r"probs of run 0 .* pass softmax"):
        plot_action_probability_grid(logits)
    with pytest.raises(BatchError, match=r"same number of actions, got \[6, 7\]"):
        plot_action_probability_grid([runs[0], runs[1][:, :6]])
    with pytest.raises(BatchError, match="2 dimension"):
        plot_action_probability_grid([runs[0][None]])
    with pytest.raises(BatchError, match=r"step labels of run 1: got 2 labels .* size 6"):
        plot_action_probability_grid(runs[:2], step_labels=[list("123456"), ["1", "2"]])
    with pytest.raises(BatchError, match=r"one list per run \(2\), got 1 lists"):
        plot_action_probability_grid(runs[:2], step_labels=[["1", "2", "3", "4", "5", "6"]])
    with pytest.raises(BatchError, match=r"one title per run \(8\), got 2"):
        plot_action_probability_grid(runs, titles=TITLES[:2])
    with pytest.raises(BatchError, match="action names: got 3 labels"):
        plot_action_probability_grid(runs, action_names=["left", "right", "forward"])
    with pytest.raises(BatchError, match="non-empty sequence"):
        plot_action_probability_grid([])
    with pytest.raises(BatchError, match="non-empty sequence"):
        plot_action_probability_grid(runs[0])  # one table, not a list of them
    with pytest.raises(BatchError, match="columns must be a positive integer"):
        plot_action_probability_grid(runs, columns=0)


def test_set_routine_section_draws_every_greedy_run_in_one_figure():
    model = build_model(n_ctx=26)
    config = ReportConfig(max_steps=12)
    section = set_routine.run(model, config)
    (figure,) = section.figures
    expected = [
        play_greedy(model, scenario, rtg=rtg, max_steps=12, seed=config.seed)
        for rtg in (config.high_rtg, config.low_rtg)
        for scenario in SCENARIOS
    ]
    assert len(figure.data) == 8
    for i, (run, trace) in enumerate(zip(expected, figure.data, strict=True)):
        np.testing.assert_array_equal(np.asarray(trace.z), np.array(_transposed(run.probs)))
        assert list(trace.x) == [f"{t + 1}: {a}" for t, a in enumerate(run.action_names)]
        title = figure.layout.annotations[i].text
        assert title.startswith(f"{run.scenario.name}, RTG {run.rtg:g}<br>")
        assert title.endswith(f" {len(run.actions)} steps")
        (placed,) = figure.select_traces(row=i // 4 + 1, col=i % 4 + 1)
        assert placed is trace
    # the numbers the verdict box reads are the runs' summaries, one per run, in order
    assert section.numbers == {"runs": [set_routine.summarise_run(r) for r in expected]}
