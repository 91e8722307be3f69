"""Analyses of the weights alone (no forward pass): QK/OV circuits, congruence, embeddings.

- :mod:`~dtlens.analysis.weights.qk_ov`: QK and OV circuits of heads, their SVD, the
  PCA of the state embedding;
- :mod:`~dtlens.analysis.weights.congruence`: how strongly weights write along the
  action unembedding directions;
- :mod:`~dtlens.analysis.weights.embeddings`: the embedding matrices as labelled rows.

Example:
    >>> from tests.conftest import build_model
    >>> embedding_matrix(build_model(), "rtg").labels
    ('rtg',)
"""

from dtlens.analysis.weights.congruence import (
    CongruenceTable,
    congruence,
    embedding_congruence,
    embedding_neuron_congruence,
    head_congruence,
    per_layer_growth,
)
from dtlens.analysis.weights.embeddings import EmbeddingRows, embedding_matrix
from dtlens.analysis.weights.qk_ov import (
    Circuit,
    HeadSVD,
    StatePCA,
    head_svd,
    ov_circuit,
    qk_circuit,
    state_embedding_pca,
)

__all__ = [
    "Circuit",
    "CongruenceTable",
    "EmbeddingRows",
    "HeadSVD",
    "StatePCA",
    "congruence",
    "embedding_congruence",
    "embedding_matrix",
    "embedding_neuron_congruence",
    "head_congruence",
    "head_svd",
    "ov_circuit",
    "per_layer_growth",
    "qk_circuit",
    "state_embedding_pca",
]
