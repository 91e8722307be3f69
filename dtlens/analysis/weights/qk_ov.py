"""QK and OV circuits of a decision transformer's heads, composed with its embeddings.

Background:
    A head reads the residual stream through two low-rank maps (Elhage et al. 2021):
    QK ``W_Q W_K^T`` (where it attends) and OV ``W_V W_O`` (what it writes). Composed
    with the DT's embeddings they become readable: which state features, RTG, actions
    or timesteps a query prefers, and which actions attending to an input pushes up
    (``E W_V W_O W_U``, the direct path to the action head). Circuits are returned as
    TransformerLens ``FactoredMatrix`` (low rank, cheap SVD) with row/column labels.

Embedding sources (:func:`embedding_matrix`): ``"state"`` (``state_embed.weight.T``,
one row per one-hot feature in the model's ``(c x y)`` order, row ``c*X*Y + x*Y + y``,
labelled ``"object:key@(3,6)"``), ``"rtg"`` (one row: RTG = 1), ``"action"`` (``"left"``
... ``"done"``, ``"pad"``), ``"time"`` (``"t0"``, ``"t1"``...; a linear time embedding
gives ``"time (per step)"`` [and ``"time bias"``]) and ``"pos"`` (``W_pos``, labelled
``"R1"``, ``"S1"``...). ``pos=p`` adds ``W_pos[p]`` to every row of another source.

LayerNorm (the convention of this module and :mod:`dtlens.analysis.weights.congruence`):
    ``fold_ln=True`` (default) reads every residual vector ``v`` through the LayerNorm
    that reads it (``ln1`` for QK/OV inputs, ``ln2`` for MLP inputs, ``ln_final``
    before ``W_U``) as ``(v - mean(v)) * w`` (centring only for ``LNPre``; nothing
    without norm), as TransformerLens' ``fold_ln`` + ``center_writing_weights`` would.
    The data-dependent ``1/σ`` (positive: signs and rankings within a position are
    kept) and all biases (LN, ``b_Q/b_K/b_V``, ``b_U``) are ignored. ``fold_ln=False``
    uses raw weights (the seed's ``W_out @ W_U``). QK scores omit ``1/sqrt(d_head)``.

Examples:
    >>> from tests.conftest import build_model
    >>> model = build_model()
    >>> qk = qk_circuit(model, layer=0, head=1, query="state", key="rtg")
    >>> tuple(qk.dense().shape), qk.rows[5], qk.cols
    ((980, 1), 'object:unseen@(0,5)', ('rtg',))
    >>> ov = ov_circuit(model, layer=1, head=0, source="action")
    >>> ov.rows[-1], ov.cols[:3]
    ('pad', ('left', 'right', 'forward'))

References:
    Elhage et al., "A Mathematical Framework for Transformer Circuits" (2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import FactoredMatrix

from dtlens.analysis.weights.embeddings import (
    Source,
    _check_head,
    action_labels,
    effective_unembed,
    embedding_matrix,
    fold_layer_norm,
    state_feature_labels,
)
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "Circuit",
    "HeadSVD",
    "StatePCA",
    "head_svd",
    "ov_circuit",
    "qk_circuit",
    "state_embedding_pca",
]


# ------------------------------------------------------------------ circuits
@dataclass(frozen=True)
class Circuit:
    """A labelled low-rank matrix: rows and columns are named inputs / outputs.

    Args:
        matrix: the circuit as ``FactoredMatrix`` ``[n_rows, n_cols]`` (``.AB`` is dense).
        rows: one label per row (e.g. state features).
        cols: one label per column (e.g. actions, or key inputs).
        name: what it is, e.g. ``"QK L0H1 state->rtg"``.
    """

    matrix: FactoredMatrix
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    name: str

    def dense(self) -> Float[Tensor, "row col"]:
        """The full ``[n_rows, n_cols]`` matrix.

        Examples:
            >>> ov_circuit(model, 0, 0, source="rtg").dense().shape
            torch.Size([1, 7])
        """
        return self.matrix.AB


def qk_circuit(
    model: HookedDecisionTransformer,
    layer: int,
    head: int,
    query: Source = "state",
    key: Source = "rtg",
    query_pos: int | None = None,
    key_pos: int | None = None,
    fold_ln: bool = True,
) -> Circuit:
    """Attention score of every query input against every key input: ``E_q W_Q W_K^T E_k^T``.

    Entry ``[i, j]`` is the (unscaled, bias-free) attention score a token embedded as
    query row i gives a token embedded as key row j.

    Args:
        model: the decision transformer.
        layer: the head's layer.
        head: the head's index in its layer.
        query: embedding source of the queries (see :func:`embedding_matrix`).
        key: embedding source of the keys.
        query_pos: add the positional embedding of this token position to the queries.
        key_pos: likewise for the keys.
        fold_ln: read the embeddings through ``ln1`` (see the module docstring).

    Raises:
        ConfigError: for a bad layer, head, source or position.

    Examples:
        >>> qk = qk_circuit(model, 0, 0, query="state", key="time", query_pos=10)
        >>> tuple(qk.matrix.shape)
        (980, 51)
    """
    _check_head(model, layer, head)
    e_q = embedding_matrix(model, query, query_pos)
    e_k = embedding_matrix(model, key, key_pos)
    with torch.no_grad():
        a = _read(model, e_q.weight, "ln1", layer, fold_ln)
        b = _read(model, e_k.weight, "ln1", layer, fold_ln)
        w_qk = FactoredMatrix(model.core.W_Q[layer, head].detach(), model.core.W_K[layer, head].T)
        matrix = a @ w_qk @ b.T.detach()
    name = f"QK L{layer}H{head} {e_q.source}->{e_k.source}"
    return Circuit(_detached(matrix), e_q.labels, e_k.labels, name)


def ov_circuit(
    model: HookedDecisionTransformer,
    layer: int,
    head: int,
    source: Source = "state",
    source_pos: int | None = None,
    fold_ln: bool = True,
) -> Circuit:
    """Direct effect on the action logits of attending to each input: ``E W_V W_O W_U``.

    Row i is what the head adds to the logits (through ``ln_final``, ignoring later
    layers) per unit of attention to a token embedded as input i.

    Args:
        model: the decision transformer.
        layer: the head's layer.
        head: the head's index in its layer.
        source: the embedding the head reads (see :func:`embedding_matrix`).
        source_pos: add the positional embedding of this token position.
        fold_ln: read through ``ln1`` and ``ln_final`` (see the module docstring).

    Raises:
        ConfigError: for a bad layer, head, source or position.

    Examples:
        >>> ov = ov_circuit(model, 1, 2, source="state")
        >>> tuple(ov.dense().shape)
        (980, 7)
    """
    _check_head(model, layer, head)
    rows = embedding_matrix(model, source, source_pos)
    with torch.no_grad():
        e = _read(model, rows.weight, "ln1", layer, fold_ln)
        w_ov = FactoredMatrix(model.core.W_V[layer, head].detach(), model.core.W_O[layer, head])
        matrix = e @ w_ov @ effective_unembed(model, fold_ln)
    name = f"OV L{layer}H{head} {rows.source}->action"
    return Circuit(_detached(matrix), rows.labels, action_labels(model.cfg.n_actions), name)


@dataclass(frozen=True)
class HeadSVD:
    """Top singular directions of a head's ``d_model x d_model`` QK or OV matrix.

    ``U @ diag(S) @ V.T`` reconstructs the matrix when all ``d_head`` directions are kept.

    Args:
        U: ``[d_model, k]`` left singular vectors (query side / residual read for OV).
        S: ``[k]`` singular values, descending.
        V: ``[d_model, k]`` right singular vectors (key side / residual written for OV).
        kind: ``"qk"`` or ``"ov"``.
        layer: the head's layer.
        head: the head's index in its layer.
    """

    U: Float[Tensor, "d_model k"]
    S: Float[Tensor, " k"]
    V: Float[Tensor, "d_model k"]
    kind: str
    layer: int
    head: int

    def reconstruct(self) -> Float[Tensor, "d_model d_model"]:
        """``U diag(S) V^T``: the matrix, truncated to the kept directions.

        Examples:
            >>> svd = head_svd(model, 0, 0, kind="ov", fold_ln=False)
            >>> W_OV = model.core.W_V[0, 0] @ model.core.W_O[0, 0]
            >>> bool(torch.allclose(svd.reconstruct(), W_OV, atol=1e-5))
            True
        """
        return (self.U * self.S) @ self.V.T


def head_svd(
    model: HookedDecisionTransformer,
    layer: int,
    head: int,
    kind: Literal["ov", "qk"] = "ov",
    k: int | None = None,
    fold_ln: bool = True,
) -> HeadSVD:
    """SVD of a head's ``W_V W_O`` (``"ov"``) or ``W_Q W_K^T`` (``"qk"``), via ``FactoredMatrix``.

    With ``fold_ln`` the input side(s) read through ``ln1`` (``L W_V W_O`` and
    ``L W_Q W_K^T L^T`` with ``L = (I - 11^T/d) diag(w)``); the OV output stays in the
    residual stream.

    Args:
        model: the decision transformer.
        layer: the head's layer.
        head: the head's index in its layer.
        kind: ``"ov"`` or ``"qk"``.
        k: number of directions to keep (default all ``d_head``).
        fold_ln: fold ``ln1`` into the input side(s).

    Raises:
        ConfigError: for a bad layer, head, kind or ``k``.

    Examples:
        >>> svd = head_svd(model, 0, 1, kind="qk", k=2)
        >>> tuple(svd.U.shape), bool(svd.S[0] >= svd.S[1])
        ((32, 2), True)
    """
    _check_head(model, layer, head)
    d_head = model.cfg.d_head
    k = d_head if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_head:
        raise ConfigError(f"k={k!r} must be an int in 1..d_head={d_head}.")
    core = model.core
    with torch.no_grad():
        eye = torch.eye(model.cfg.d_model, dtype=core.W_V.dtype, device=core.W_V.device)
        read = _read(model, eye, "ln1", layer, fold_ln)
        if kind == "ov":
            matrix = read @ FactoredMatrix(core.W_V[layer, head], core.W_O[layer, head])
        elif kind == "qk":
            matrix = read @ FactoredMatrix(core.W_Q[layer, head], core.W_K[layer, head].T) @ read.T
        else:
            raise ConfigError(f"kind={kind!r} must be 'ov' or 'qk'.")
        U, S, V = matrix.svd()
    return HeadSVD(U[:, :k].detach(), S[:k].detach(), V[:, :k].detach(), kind, layer, head)


# ------------------------------------------------------------------------ PCA
@dataclass(frozen=True)
class StatePCA:
    """Principal components of the state embedding's columns (one point per state feature).

    Args:
        components: ``[k, d_model]`` unit directions in the residual stream, by variance.
        scores: ``[state_dim, k]`` coordinates of each (centred) feature embedding.
        explained_variance: ``[k]`` variance along each component (``S^2 / (n - 1)``).
        explained_variance_ratio: ``[k]`` share of the total variance.
        mean: ``[d_model]`` the mean feature embedding that was subtracted.
        labels: one label per feature (``"object:key@(3,6)"``), in ``(c x y)`` order.
    """

    components: Float[Tensor, "k d_model"]
    scores: Float[Tensor, "state_dim k"]
    explained_variance: Float[Tensor, " k"]
    explained_variance_ratio: Float[Tensor, " k"]
    mean: Float[Tensor, " d_model"]
    labels: tuple[str, ...]


def state_embedding_pca(
    model: HookedDecisionTransformer, k: int = 3, center: bool = True
) -> StatePCA:
    """PCA of the ``state_dim`` state-feature embeddings (``state_embed.weight.T`` rows).

    Each one-hot feature (channel c at cell (x, y)) is one point in ``d_model``
    dimensions; ``center`` subtracts the mean feature embedding first (ordinary PCA;
    ``center=False`` gives the uncentred SVD, whose first component is then mostly
    that mean). Computed with an exact ``torch.linalg.svd``; raw weights, no
    LayerNorm folding (this describes the embedding, not a circuit).

    Raises:
        ConfigError: if ``k`` is not in ``1..min(state_dim, d_model)``.

    Examples:
        >>> pca = state_embedding_pca(model, k=3)
        >>> tuple(pca.scores.shape), bool(pca.explained_variance_ratio.sum() <= 1)
        ((980, 3), True)
    """
    with torch.no_grad():
        x = model.state_embed.weight.detach().T
        limit = min(x.shape)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
            raise ConfigError(f"k={k!r} must be an int in 1..{limit} (min(state_dim, d_model)).")
        mean = x.mean(0) if center else torch.zeros_like(x[0])
        _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
        components = vh[:k]
        variance = s.pow(2) / max(x.shape[0] - 1, 1)
    return StatePCA(
        components=components,
        scores=(x - mean) @ components.T,
        explained_variance=variance[:k],
        explained_variance_ratio=variance[:k] / variance.sum(),
        mean=mean,
        labels=state_feature_labels(model.cfg.obs_shape),
    )


# -------------------------------------------------------------------- helpers
def _read(
    model: HookedDecisionTransformer, vectors: Tensor, norm: str, layer: int, fold_ln: bool
) -> Tensor:
    return fold_layer_norm(vectors, model, norm, layer) if fold_ln else vectors  # type: ignore[arg-type]


def _detached(matrix: FactoredMatrix) -> FactoredMatrix:
    return FactoredMatrix(matrix.A.detach(), matrix.B.detach())
