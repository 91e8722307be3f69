"""QK / OV circuits, head SVDs and the state-embedding PCA on tiny models.

Expectations: explicit matmuls of the raw weights written here, the model's own
modules (its forward's ``hook_state_embed``, its ``ln_final``), and linear-algebra
invariants (SVD reconstruction, Eckart-Young error, PCA variance).
"""

from __future__ import annotations

import pytest
import torch

from dtlens.analysis.weights.embeddings import (
    action_index,
    action_labels,
    effective_unembed,
    embedding_matrix,
    fold_layer_norm,
    state_feature_labels,
)
from dtlens.analysis.weights.qk_ov import head_svd, ov_circuit, qk_circuit, state_embedding_pca
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
    return with_random_norm_weights(build_model())


def ln_read(v, w):
    """How a LayerNorm with weight w reads v, minus 1/sigma and bias (written out here)."""
    return (v - v.mean(-1, keepdim=True)) * w


# ---------------------------------------------------------------- embeddings
def test_state_rows_follow_the_models_flattening(model):
    """Row "object:key@(3,6)" is what the model's forward embeds for that one bit."""
    obs = torch.zeros(1, 1, 7, 7, 20)
    obs[0, 0, 3, 6, 5] = 1.0  # key at x=3, y=6
    batch = TrajectoryBatch(
        obs, torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 1), torch.zeros(1, 1).long()
    )
    _, cache = model.run_with_cache(batch, names_filter="hook_state_embed")
    rows = embedding_matrix(model, "state")
    index = rows.labels.index("object:key@(3,6)")
    torch.testing.assert_close(rows.weight[index], cache["hook_state_embed"][0, 0])
    assert state_feature_labels((7, 7, 20))[index] == "object:key@(3,6)"


def test_embedding_rows_and_labels(model):
    action = embedding_matrix(model, "action")
    assert action.labels == (*action_labels(7), "pad")
    torch.testing.assert_close(action.weight, model.action_embed.weight.detach())
    time = embedding_matrix(model, "time")
    assert time.labels[:2] == ("t0", "t1") and time.weight.shape == (51, 32)
    rtg = embedding_matrix(model, "rtg")
    torch.testing.assert_close(rtg.weight, model.rtg_embed.weight.detach().T)
    pos = embedding_matrix(model, "pos")
    assert pos.labels[:4] == ("R1", "S1", "A1", "R2") and len(pos.labels) == 11
    shifted = embedding_matrix(model, "rtg", pos=3)
    torch.testing.assert_close(shifted.weight[0], rtg.weight[0] + model.core.W_pos[3].detach())
    assert shifted.labels == ("rtg+R2",)


def test_linear_time_embedding_rows():
    model = build_model(time_embedding="linear", time_embedding_bias=True)
    rows = embedding_matrix(model, "time")
    assert rows.labels == ("time (per step)", "time bias")
    torch.testing.assert_close(rows.weight[1], model.time_embed.bias.detach())


def test_effective_unembed_matches_the_real_final_norm(model):
    """sigma(v) * (ln_final(v) - b) @ W_U is what the folded unembed must give."""
    v = torch.randn(5, 1, 32, generator=torch.Generator().manual_seed(0))
    centred = v - v.mean(-1, keepdim=True)
    sigma = (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    with torch.no_grad():
        expected = (sigma * (model.core.ln_final(v) - model.core.ln_final.b)) @ model.W_U
    torch.testing.assert_close(v @ effective_unembed(model), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(effective_unembed(model, fold_ln=False), model.W_U.detach())


def test_fold_layer_norm_variants():
    v = torch.randn(3, 32)
    lnpre = build_model(normalization="LNPre")
    torch.testing.assert_close(fold_layer_norm(v, lnpre, "ln1", 0), v - v.mean(-1, keepdim=True))
    plain = build_model(normalization=None)
    assert torch.equal(fold_layer_norm(v, plain, "ln_final"), v)


# ------------------------------------------------------------------ circuits
def test_qk_circuit_entries_equal_explicit_matmuls(model):
    layer, head = 1, 3
    qk = qk_circuit(model, layer, head, query="state", key="action", fold_ln=False)
    e_q = model.state_embed.weight.detach().T  # [980, d]
    e_k = model.action_embed.weight.detach()  # [8, d]
    W_Q, W_K = model.core.W_Q[layer, head].detach(), model.core.W_K[layer, head].detach()
    expected = e_q @ W_Q @ W_K.T @ e_k.T
    torch.testing.assert_close(qk.dense(), expected, atol=1e-6, rtol=1e-5)
    i, j = 49 * 6 + 7 * 2 + 4, 2  # ball at (2, 4) vs the "forward" action embedding
    assert float(qk.dense()[i, j]) == pytest.approx(
        float((e_q[i] @ W_Q) @ (e_k[j] @ W_K)), abs=1e-6
    )
    assert qk.rows[i] == "object:ball@(2,4)" and qk.cols[j] == "forward"


def test_qk_circuit_folds_ln1_and_adds_positions(model):
    layer, head = 0, 1
    qk = qk_circuit(model, layer, head, query="rtg", key="time", query_pos=9, key_pos=4)
    w = model.core.blocks[layer].ln1.w.detach()
    q_in = ln_read(model.rtg_embed.weight.detach().T + model.core.W_pos[9].detach(), w)
    k_in = ln_read(model.time_embed.weight.detach() + model.core.W_pos[4].detach(), w)
    expected = (q_in @ model.core.W_Q[layer, head]) @ (k_in @ model.core.W_K[layer, head]).T
    torch.testing.assert_close(qk.dense(), expected.detach(), atol=1e-6, rtol=1e-5)
    assert qk.matrix.A.shape == (1, model.cfg.d_head)  # kept factored (rank d_head)


def test_ov_circuit_is_direct_path_to_action_logits(model):
    layer, head = 1, 0
    raw = ov_circuit(model, layer, head, source="action", fold_ln=False)
    W_V, W_O = model.core.W_V[layer, head], model.core.W_O[layer, head]
    e = model.action_embed.weight
    torch.testing.assert_close(raw.dense(), (e @ W_V @ W_O @ model.W_U).detach(), atol=1e-6, rtol=0)
    folded = ov_circuit(model, layer, head, source="action")
    written = ln_read(e, model.core.blocks[layer].ln1.w) @ W_V @ W_O  # into the residual
    expected = ln_read(written, model.core.ln_final.w) @ model.W_U
    torch.testing.assert_close(folded.dense(), expected.detach(), atol=1e-6, rtol=0)
    assert folded.cols == action_labels(7) and folded.rows[-1] == "pad"


# ----------------------------------------------------------------------- SVD
@pytest.mark.parametrize("kind", ["ov", "qk"])
def test_head_svd_reconstructs_the_head(model, kind):
    layer, head = 0, 2
    svd = head_svd(model, layer, head, kind=kind, fold_ln=False)
    if kind == "ov":
        dense = model.core.W_V[layer, head] @ model.core.W_O[layer, head]
    else:
        dense = model.core.W_Q[layer, head] @ model.core.W_K[layer, head].T
    torch.testing.assert_close(svd.reconstruct(), dense.detach(), atol=1e-5, rtol=0)
    assert torch.all(svd.S[:-1] >= svd.S[1:])
    torch.testing.assert_close(svd.U.T @ svd.U, torch.eye(8), atol=1e-5, rtol=0)


def test_truncated_svd_error_is_eckart_young(model):
    full = head_svd(model, 1, 1, kind="ov")
    top = head_svd(model, 1, 1, kind="ov", k=3)
    error = torch.linalg.matrix_norm(full.reconstruct() - top.reconstruct())
    assert float(error) == pytest.approx(float(full.S[3:].pow(2).sum().sqrt()), rel=1e-4)


def test_head_svd_folds_ln1_on_the_input_side(model):
    layer, head = 1, 2
    w = model.core.blocks[layer].ln1.w.detach()
    read = ln_read(torch.eye(32), w)  # row i: how ln1 reads the basis vector e_i
    svd = head_svd(model, layer, head, kind="qk")
    dense = read @ model.core.W_Q[layer, head] @ model.core.W_K[layer, head].T @ read.T
    torch.testing.assert_close(svd.reconstruct(), dense.detach(), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------- PCA
def test_state_pca_variance_ordering_and_reconstruction(model):
    k = model.cfg.d_model  # all components: exact reconstruction
    pca = state_embedding_pca(model, k=k)
    x = model.state_embed.weight.detach().T
    assert torch.all(pca.explained_variance[:-1] >= pca.explained_variance[1:])
    torch.testing.assert_close(pca.explained_variance_ratio.sum(), torch.tensor(1.0))
    torch.testing.assert_close(pca.scores @ pca.components + pca.mean, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(pca.scores.var(0), pca.explained_variance, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(pca.mean, x.mean(0))
    top = state_embedding_pca(model, k=3)
    torch.testing.assert_close(top.components @ top.components.T, torch.eye(3), atol=1e-5, rtol=0)
    assert top.labels[49 * 5 + 7 * 3 + 6] == "object:key@(3,6)"


def test_uncentred_pca_keeps_the_mean_in(model):
    pca = state_embedding_pca(model, k=2, center=False)
    assert torch.count_nonzero(pca.mean) == 0
    x = model.state_embed.weight.detach().T
    s = torch.linalg.svdvals(x)
    torch.testing.assert_close(pca.explained_variance, s[:2].pow(2) / (x.shape[0] - 1))


# -------------------------------------------------------------------- errors
def test_errors_name_the_bad_value(model):
    with pytest.raises(ConfigError, match="layer=2"):
        qk_circuit(model, 2, 0)
    with pytest.raises(ConfigError, match="head=4"):
        ov_circuit(model, 0, 4)
    with pytest.raises(ConfigError, match="'reward'"):
        embedding_matrix(model, "reward")
    with pytest.raises(ConfigError, match="pos=11"):
        embedding_matrix(model, "state", pos=11)
    with pytest.raises(ConfigError, match="k=9"):
        head_svd(model, 0, 0, k=9)
    with pytest.raises(ConfigError, match="kind='vo'"):
        head_svd(model, 0, 0, kind="vo")
    with pytest.raises(ConfigError, match="k=0"):
        state_embedding_pca(model, k=0)
    with pytest.raises(ConfigError, match="'jump'"):
        action_index("jump", 7)
    with pytest.raises(ConfigError, match="clone"):
        embedding_matrix(build_model(model_type="clone", n_ctx=7), "rtg")
