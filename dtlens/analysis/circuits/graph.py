"""The decision transformer as a graph: senders, receivers and the edges between them.

Background:
    In a transformer every component reads the residual stream, the sum of what every
    earlier component wrote to it. Writing the sum out turns the model into a graph
    (Elhage et al. 2021; the "edges" of ACDC, Conmy et al. 2023, and of edge
    attribution patching, Syed et al. 2023, Hanna et al. 2024): an *edge* is one
    sender's write as read by one receiver. A decision transformer's graph starts at
    its four embeddings, which no gridworld tool for language models knows about.

Nodes (the classes of :mod:`dtlens.analysis.circuits.nodes`):

- senders: the DT embeddings ``rtg_embed``, ``state_embed``, ``action_embed``,
  ``time_embed`` (whole, or one sender per token they write with
  ``token_embeddings=`` the window's token labels: ``state_embed@S5``), every head
  ``L{l}H{h}`` (its ``z @ W_O``) and every MLP ``MLP{l}``;
- receivers: every head's query, key and value input ``L{l}H{h}.q/k/v``, every MLP's
  input ``MLP{l}.in`` and the final residual stream, ``logits``.

A sender reaches a receiver when it writes before the receiver reads: embeddings reach
everything, a head of layer l the heads of later layers and the MLPs of layers >= l,
an MLP of layer l everything after it, and everything reaches the logits. Constant
terms (attention output biases, positional embeddings) are the same in every run and
are not senders.

Examples:
    >>> from tests.conftest import build_model
    >>> graph = DTGraph(build_model())  # 2 layers x 4 heads
    >>> len(graph.senders), len(graph.receivers), len(graph.edges)
    (14, 27, 191)
    >>> graph.edges[0], parse_edge("L0H1->L1H2.v")
    (Edge(sender=Embed(kind='rtg', pos=None), receiver=HeadInput(layer=0, head=0, kind='q')), \
Edge(sender=Head(layer=0, head=1, pos=None), receiver=HeadInput(layer=1, head=2, kind='v')))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Bool
from torch import Tensor

from dtlens.analysis.circuits.nodes import (
    EMBED_KINDS,
    MLP,
    Embed,
    Head,
    HeadInput,
    Logits,
    MLPInput,
    Receiver,
    Sender,
    parse_receiver,
    parse_sender,
    reaches,
)
from dtlens.errors import ConfigError

__all__ = ["DTGraph", "Edge", "EdgeSpec", "model_senders", "parse_edge"]


@dataclass(frozen=True)
class Edge:
    """One sender's write to the residual stream, as read by one receiver."""

    sender: Sender
    receiver: Receiver

    def __str__(self) -> str:
        return f"{self.sender}->{self.receiver}"


#: An edge, or its shorthand ``"SENDER->RECEIVER"``: ``"L0H1->L1H2.v"``,
#: ``"state_embed@S5->logits"``.
EdgeSpec = Edge | str


def parse_edge(spec: EdgeSpec) -> Edge:
    """An :class:`Edge` from its shorthand ``"SENDER->RECEIVER"`` (edges pass through).

    Raises:
        ConfigError: text without ``->`` or with an unknown sender or receiver.

    Examples:
        >>> str(parse_edge("MLP0 -> logits"))
        'MLP0->logits'
    """
    if isinstance(spec, Edge):
        return spec
    if not isinstance(spec, str) or "->" not in spec:
        raise ConfigError(
            f"an edge is an Edge or a string 'SENDER->RECEIVER' such as 'L0H1->L1H2.v', got "
            f"{spec!r}."
        )
    sender, receiver = spec.split("->", 1)
    return Edge(parse_sender(sender), parse_receiver(receiver))


class DTGraph:
    """Every sender, receiver and edge of a model, with a fixed index for each.

    Args:
        model: the decision transformer (its config gives layers, heads, embeddings).
        token_embeddings: the window's token labels (``model.token_labels(batch)``) to
            split every embedding into one sender per token it writes; None (default)
            keeps one sender per embedding.

    Attributes:
        senders: in graph order (embeddings, then per layer its heads and its MLP).
        receivers: in graph order (per layer its heads' q, k, v and its MLP, then logits).
        edges: every (sender, receiver) pair where the sender reaches the receiver.

    Examples:
        >>> graph = DTGraph(model, token_embeddings=model.token_labels(batch))
        >>> [str(s) for s in graph.senders[:3]]
        ['rtg_embed@R1', 'rtg_embed@R2', 'rtg_embed@R3']
    """

    def __init__(self, model: object, token_embeddings: Sequence[str] | None = None) -> None:
        cfg = model.cfg  # type: ignore[attr-defined]
        if cfg.token_embedding == "huggingface":
            raise ConfigError(
                "this model (token_embedding='huggingface') normalises the sum of its "
                "embeddings with embed_ln, so they are not separate senders of a graph; "
                "edge patching needs additive embeddings (use path_patching with heads and "
                "MLPs as senders)."
            )
        self.n_layers, self.n_heads = cfg.n_layers, cfg.n_heads
        receivers: list[Receiver] = []
        for layer in range(self.n_layers):
            receivers += [
                HeadInput(layer, h, kind) for h in range(self.n_heads) for kind in ("q", "k", "v")
            ]
            receivers.append(MLPInput(layer))
        receivers.append(Logits())
        self.senders: tuple[Sender, ...] = model_senders(cfg, token_embeddings)
        self.receivers: tuple[Receiver, ...] = tuple(receivers)
        self.token_embeddings = None if token_embeddings is None else tuple(token_embeddings)
        self._sender_index = {s: i for i, s in enumerate(self.senders)}
        self._receiver_index = {r: i for i, r in enumerate(self.receivers)}
        self.edges: tuple[Edge, ...] = tuple(
            Edge(s, r) for r in self.receivers for s in self.senders if reaches(s, r)
        )

    @cached_property
    def reach(self) -> Bool[Tensor, "sender receiver"]:
        """True where the sender reaches the receiver (where an edge exists)."""
        out = torch.zeros(len(self.senders), len(self.receivers), dtype=torch.bool)
        for edge in self.edges:
            out[self.index(edge)] = True
        return out

    def index(self, edge: EdgeSpec) -> tuple[int, int]:
        """``(sender index, receiver index)`` of an edge of this graph.

        Raises:
            ConfigError: a node that is not in the graph, or a sender that does not
                reach the receiver (the message says why).
        """
        edge = parse_edge(edge)
        if edge.sender not in self._sender_index:
            raise ConfigError(
                f"{edge}: sender {edge.sender} is not a node of this graph; its senders are "
                f"{_preview(self.senders)}."
            )
        if edge.receiver not in self._receiver_index:
            raise ConfigError(
                f"{edge}: receiver {edge.receiver} is not a node of this graph; its receivers "
                f"are {_preview(self.receivers)}."
            )
        if not reaches(edge.sender, edge.receiver):
            raise ConfigError(
                f"{edge} is not an edge: {edge.sender} writes to the residual stream after "
                f"{edge.receiver} reads it."
            )
        return self._sender_index[edge.sender], self._receiver_index[edge.receiver]

    def mask(self, edges: Iterable[EdgeSpec]) -> Bool[Tensor, "sender receiver"]:
        """``[n_senders, n_receivers]``, True at the given edges.

        Examples:
            >>> int(graph.mask(["L0H1->logits", "MLP0->logits"]).sum())
            2
        """
        out = torch.zeros(len(self.senders), len(self.receivers), dtype=torch.bool)
        for edge in edges:
            out[self.index(edge)] = True
        return out

    def edges_of(self, mask: Bool[Tensor, "sender receiver"]) -> list[Edge]:
        """The edges where ``mask`` is True, in graph order.

        Examples:
            >>> [str(e) for e in graph.edges_of(graph.mask(["MLP0->logits"]))]
            ['MLP0->logits']
        """
        self.check_mask(mask)
        return [e for e in self.edges if bool(mask[self.index(e)])]

    def check_mask(self, mask: object, name: str = "mask") -> None:
        """Raise ConfigError unless ``mask`` is a bool ``[..., n_senders, n_receivers]`` tensor
        that is False wherever there is no edge."""
        shape = (len(self.senders), len(self.receivers))
        if (
            not isinstance(mask, Tensor)
            or mask.dtype != torch.bool
            or tuple(mask.shape[-2:]) != shape
        ):
            got = (
                f"{mask.dtype} {list(mask.shape)}"
                if isinstance(mask, Tensor)
                else type(mask).__name__
            )
            raise ConfigError(
                f"{name} must be a bool tensor [..., n_senders, n_receivers] = [..., {shape[0]}, "
                f"{shape[1]}]; got {got}. Build one with graph.mask(edges)."
            )
        if bool((mask & ~self.reach.to(mask.device)).any()):
            raise ConfigError(
                f"{name} marks sender/receiver pairs that are not edges of the graph."
            )

    def __len__(self) -> int:
        return len(self.edges)

    def __repr__(self) -> str:
        return (
            f"DTGraph({len(self.senders)} senders, {len(self.receivers)} receivers, "
            f"{len(self.edges)} edges)"
        )


def model_senders(cfg: object, token_embeddings: Sequence[str] | None = None) -> tuple[Sender, ...]:
    """Every sender of a model with config ``cfg``, in :class:`DTGraph`'s order.

    The embeddings (RTG only for a decision transformer; one sender per token when
    ``token_embeddings`` gives the window's labels), then per layer its heads and its
    MLP. Unlike :class:`DTGraph` it accepts every model (path patching sweeps these
    senders; a graph refuses a model whose embeddings are normalised together).

    Examples:
        >>> senders = model_senders(model.cfg)  # 2 layers x 4 heads
        >>> len(senders), [str(s) for s in senders[2:6]], str(senders[-1])
        (14, ['action_embed', 'time_embed', 'L0H0', 'L0H1'], 'MLP1')
    """
    has_rtg = cfg.model_type == "decision_transformer"  # type: ignore[attr-defined]
    kinds = [k for k in EMBED_KINDS if k != "rtg" or has_rtg]
    senders: list[Sender] = []
    for kind in kinds:
        if token_embeddings is None:
            senders.append(Embed(kind))
        else:
            senders += [Embed(kind, (label,)) for label in _tokens_of(kind, token_embeddings)]
    for layer in range(cfg.n_layers):  # type: ignore[attr-defined]
        senders += [Head(layer, h) for h in range(cfg.n_heads)]  # type: ignore[attr-defined]
        senders.append(MLP(layer))
    return tuple(senders)


def _tokens_of(kind: str, labels: Sequence[str]) -> list[str]:
    """The token labels an embedding writes: its own letter's tokens (every token: time)."""
    if kind == "time":
        return list(labels)
    letter = {"rtg": "R", "state": "S", "action": "A"}[kind]
    return [label for label in labels if label.startswith(letter)]


def _preview(nodes: Sequence[object], n: int = 6) -> str:
    names = [str(x) for x in nodes[:n]]
    return ", ".join(names) + (f", ... ({len(nodes)} in all)" if len(nodes) > n else "")
