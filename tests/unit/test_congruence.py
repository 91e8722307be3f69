"""Congruence tables on tiny models, checked against einsums written here.

The LayerNorm-folded variants are checked against the reading written out in this
file, ``((v - mean v) * w) @ W``, applied to the *writing* side (the module folds it
into ``W_U`` instead), and the embedding rows against the model's own forward.
"""

from __future__ import annotations

import pytest
import torch
from einops import einsum

from dtlens.analysis.weights.congruence import (
    CongruenceTable,
    congruence,
    embedding_congruence,
    embedding_neuron_congruence,
    head_congruence,
    per_layer_growth,
)
from dtlens.errors import ConfigError
from dtlens.model import TrajectoryBatch
from tests.conftest import build_model


def with_random_norm_weights(model):
    """LayerNorm weights start at 1: make them random so that ignoring them is caught."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.core.named_parameters():
            if ".ln" in f".{name}" and name.endswith("weight"):
                param.copy_(1 + 0.5 * torch.randn(param.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def model():
    return with_random_norm_weights(build_model(gated_mlp=True, act_fn="relu"))


def ln_read(v, w=None):
    centred = v - v.mean(-1, keepdim=True)
    return centred if w is None else centred * w


# ---------------------------------------------------------- neuron -> action
def test_raw_congruence_is_w_out_times_w_u(model):
    table = congruence(model, fold_ln=False)
    expected = einsum(
        model.core.W_out, model.W_U, "layer neuron d_model, d_model action -> layer neuron action"
    )
    assert table.axes == ("layer", "neuron", "action") and table.values.shape == (2, 64, 7)
    torch.testing.assert_close(table.values, expected.detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm", ["LN", "LNPre", None])
def test_folded_congruence_reads_through_ln_final(norm):
    model = with_random_norm_weights(build_model(normalization=norm))
    w = model.core.ln_final.w if norm == "LN" else None
    written = model.core.W_out if norm is None else ln_read(model.core.W_out, w)
    expected = einsum(written, model.W_U, "layer neuron d, d action -> layer neuron action")
    torch.testing.assert_close(congruence(model).values, expected.detach(), atol=1e-6, rtol=0)


def test_one_layer_table(model):
    full = congruence(model)
    one = congruence(model, layer=1)
    assert one.axes == ("neuron", "action") and one.fixed == {"layer": 1}
    torch.testing.assert_close(one.values, full.values[1])
    assert one.to_long_records()[0] == {
        "layer": 1,
        "neuron": 0,
        "action": "left",
        "value": float(full.values[1, 0, 0]),
    }


def test_long_records_are_one_row_per_neuron_action_pair(model):
    table = congruence(model)
    records = table.to_long_records()
    assert len(records) == 2 * 64 * 7
    rec = records[1 * 64 * 7 + 3 * 7 + 2]
    assert rec == {
        "layer": 1,
        "neuron": 3,
        "action": "forward",
        "value": pytest.approx(float(table.values[1, 3, 2])),
    }
    assert table.value(layer=1, neuron=3, action="forward") == pytest.approx(rec["value"])


# -------------------------------------------------------- per-layer growth
def test_per_layer_growth_on_a_hand_made_table():
    values = torch.tensor(
        [  # layer 0: 2 neurons x 3 actions; layer 1
            [[1.0, -2.0, 0.0], [-3.0, 1.0, 0.5]],
            [[0.0, 4.0, -1.0], [2.0, 0.0, 1.0]],
        ]
    )
    labels = {"layer": (0, 1), "neuron": (0, 1), "action": ("left", "right", "forward")}
    table = CongruenceTable(values, ("layer", "neuron", "action"), labels, "hand")
    growth = per_layer_growth(table, actions=("left", "right"))
    assert growth.axes == ("layer", "action") and growth.labels["action"] == ("left", "right")
    torch.testing.assert_close(growth.values, torch.tensor([[3.0, 2.0], [2.0, 4.0]]))
    norm = per_layer_growth(table, actions=("forward",), stat="norm")
    torch.testing.assert_close(norm.values, torch.tensor([[0.5], [2.0**0.5]]))
    mean = per_layer_growth(table, actions=(0,), stat="mean_abs")
    torch.testing.assert_close(mean.values, torch.tensor([[2.0], [1.0]]))


def test_per_layer_growth_needs_the_full_table(model):
    with pytest.raises(ConfigError, match="axes"):
        per_layer_growth(congruence(model, layer=0))
    with pytest.raises(ConfigError, match="stat='max'"):
        per_layer_growth(congruence(model), stat="max")


# ------------------------------------------------------- embedding -> action
def test_embedding_congruence_rows_match_the_forward(model):
    """The row of a state feature is W_U applied to the model's own embedding of that bit."""
    obs = torch.zeros(1, 1, 7, 7, 20)
    obs[0, 0, 1, 4, 12] = 1.0  # colour green at x=1, y=4
    batch = TrajectoryBatch(
        obs, torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 1), torch.zeros(1, 1).long()
    )
    _, cache = model.run_with_cache(batch, names_filter="hook_state_embed")
    tables = embedding_congruence(model, fold_ln=False)
    assert sorted(tables) == ["action", "rtg", "state", "time"]
    expected = (cache["hook_state_embed"][0, 0] @ model.W_U).detach()
    for a, action in enumerate(tables["state"].labels["action"]):
        value = tables["state"].value(input="colour:green@(1,4)", action=action)
        assert value == pytest.approx(float(expected[a]), abs=1e-6)


def test_embedding_congruence_other_sources(model):
    tables = embedding_congruence(model, sources=("action", "rtg", "time", "pos"))
    w = model.core.ln_final.w
    expected_action = ln_read(model.action_embed.weight, w) @ model.W_U
    torch.testing.assert_close(tables["action"].values, expected_action.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        tables["rtg"].values, (ln_read(model.rtg_embed.weight.T, w) @ model.W_U).detach()
    )
    assert tables["time"].values.shape == (51, 7) and tables["pos"].labels["input"][1] == "S1"
    assert tables["rtg"].fixed == {"source": "rtg"}
    records = tables["action"].to_long_records()
    assert records[-1]["input"] == "pad" and records[-1]["source"] == "action"


def test_clone_skips_rtg_by_default():
    clone = build_model(model_type="clone", n_ctx=7)
    assert "rtg" not in embedding_congruence(clone)
    with pytest.raises(ConfigError, match="clone"):
        embedding_congruence(clone, sources=("rtg",))


# ------------------------------------------------------- embedding -> neuron
@pytest.mark.parametrize("weight", ["in", "gate"])
def test_embedding_neuron_congruence(model, weight):
    table = embedding_neuron_congruence(model, "action", weight=weight, fold_ln=False)
    w_all = model.core.W_in if weight == "in" else model.core.W_gate
    expected = einsum(
        model.action_embed.weight, w_all, "input d, layer d neuron -> layer input neuron"
    )
    assert table.axes == ("layer", "input", "neuron")
    torch.testing.assert_close(table.values, expected.detach(), atol=1e-6, rtol=0)
    folded = embedding_neuron_congruence(model, "action", layer=1, weight=weight)
    expected_1 = ln_read(model.action_embed.weight, model.core.blocks[1].ln2.w) @ w_all[1]
    torch.testing.assert_close(folded.values, expected_1.detach(), atol=1e-6, rtol=0)
    assert folded.fixed == {"source": "action", "layer": 1}


def test_gate_needs_a_gated_mlp():
    with pytest.raises(ConfigError, match="gated_mlp=False"):
        embedding_neuron_congruence(build_model(), weight="gate")


# ----------------------------------------------------------- head OV -> action
def test_head_congruence_is_the_ov_direct_path(model):
    table = head_congruence(model, "rtg", fold_ln=False)
    expected = einsum(
        model.rtg_embed.weight.T,
        model.core.W_V,
        model.core.W_O,
        model.W_U,
        "input d, layer head d h, layer head h e, e action -> layer head input action",
    )
    assert table.axes == ("layer", "head", "input", "action")
    torch.testing.assert_close(table.values, expected.detach(), atol=1e-6, rtol=0)
    one = head_congruence(model, "rtg", layer=0, fold_ln=False)
    torch.testing.assert_close(one.values, table.values[0])


def test_bad_layer_raises(model):
    with pytest.raises(ConfigError, match="layer=5"):
        congruence(model, layer=5)
    with pytest.raises(ConfigError, match="layer=-1"):
        head_congruence(model, layer=-1)
    with pytest.raises(ConfigError, match="'jump'"):
        per_layer_growth(congruence(model), actions=("jump",))
