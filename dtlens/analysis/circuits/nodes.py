"""The nodes of path patching: which component sends, which input receives.

Path patching (:mod:`dtlens.analysis.circuits.path_patching`) changes what a *receiver* reads
from the residual stream by what chosen *senders* wrote there. This module names both
ends as small frozen dataclasses, parses their string shorthands, checks them against
a model and says which sender can reach which receiver.

Senders (a component's write to the residual stream):

- :class:`Head` ``(layer, head, pos=None)``: the head's output ``z @ W_O[layer, head]``
  (``"L1H3"``); the shared attention bias ``b_O`` is the same in both runs.
- :class:`MLP` ``(layer, pos=None)``: the MLP's output (``"MLP0"``).
- :class:`Embed` ``(kind, pos=None)``: an embedding of the decision transformer,
  ``"rtg"``, ``"state"``, ``"action"`` or ``"time"`` (``"rtg_embed"``), written at the
  tokens it is added to (the time embedding at every token of its step).

``pos`` restricts a sender to token positions: ints (negative from the end) or token
labels such as ``"S9"``; ``pos=()`` writes nothing. Shorthand: ``"L1H3@S9,R9"``.

Receivers (an input read from the residual stream):

- :class:`HeadInput` ``(layer, head, "q"|"k"|"v")``: one head's query, key or value
  input (``"L2H1.q"``);
- :class:`MLPInput` ``(layer)``: an MLP's input (``"MLP1"`` or ``"MLP1.in"``);
- :class:`Logits`: the final residual stream, before ``ln_final`` (``"logits"``);
- :class:`ResidPre` ``(layer)``: the whole residual stream entering a block
  (``"resid_pre1"``), read by everything from that block on.

What the nodes compute in a forward pass (a sender's write, a receiver's input) is in
:mod:`dtlens.analysis.circuits.node_io`.

Example:
    >>> parse_sender("L1H3@S9"), parse_receiver("L2H1.q")
    (Head(layer=1, head=3, pos=('S9',)), HeadInput(layer=2, head=1, kind='q'))
    >>> str(Head(1, 3, pos=(24, 25))), str(MLPInput(0)), reaches(Head(0, 2), MLPInput(0))
    ('L1H3@24,25', 'MLP0.in', True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Union

from dtlens.errors import ConfigError, HeadIndexError
from dtlens.model.config import DTConfig
from dtlens.model.validation import is_head_index, negative_head_hint

__all__ = [
    "MLP",
    "Embed",
    "Head",
    "HeadInput",
    "Logits",
    "MLPInput",
    "Receiver",
    "ResidPre",
    "Sender",
    "parse_receiver",
    "parse_receivers",
    "parse_sender",
    "parse_senders",
    "reaches",
    "resolve_positions",
    "validate_node",
]

Position = int | str
EmbedKind = Literal["rtg", "state", "action", "time"]
EMBED_KINDS: tuple[str, ...] = ("rtg", "state", "action", "time")


def _pos_suffix(pos: tuple[Position, ...] | None) -> str:
    return "" if pos is None else "@" + ",".join(str(p) for p in pos)


def _as_pos(pos: Iterable[Position] | Position | None) -> tuple[Position, ...] | None:
    if pos is None:
        return None
    if isinstance(pos, int | str):
        pos = (pos,)
    out = tuple(pos)
    for p in out:
        if isinstance(p, bool) or not isinstance(p, int | str):
            raise ConfigError(f"positions are ints or token labels like 'S9', got {p!r}.")
    return out


@dataclass(frozen=True)
class Head:
    """Sender: attention head ``head`` of ``layer`` (its ``z @ W_O`` write), at ``pos``."""

    layer: int
    head: int
    pos: tuple[Position, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pos", _as_pos(self.pos))

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}{_pos_suffix(self.pos)}"


@dataclass(frozen=True)
class MLP:
    """Sender: the MLP of ``layer`` (its output ``hook_mlp_out``), at ``pos``."""

    layer: int
    pos: tuple[Position, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pos", _as_pos(self.pos))

    def __str__(self) -> str:
        return f"MLP{self.layer}{_pos_suffix(self.pos)}"


@dataclass(frozen=True)
class Embed:
    """Sender: a DT embedding (``"rtg"``, ``"state"``, ``"action"``, ``"time"``), at ``pos``."""

    kind: EmbedKind
    pos: tuple[Position, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in EMBED_KINDS:
            raise ConfigError(f"Embed kind must be one of {EMBED_KINDS}, got {self.kind!r}.")
        object.__setattr__(self, "pos", _as_pos(self.pos))

    @property
    def hook_name(self) -> str:
        """The embedding's hook point, e.g. ``hook_rtg_embed``."""
        return f"hook_{self.kind}_embed"

    def __str__(self) -> str:
        return f"{self.kind}_embed{_pos_suffix(self.pos)}"


@dataclass(frozen=True)
class HeadInput:
    """Receiver: the query, key or value input of one attention head."""

    layer: int
    head: int
    kind: Literal["q", "k", "v"]

    def __post_init__(self) -> None:
        if self.kind not in ("q", "k", "v"):
            raise ConfigError(f"HeadInput kind must be 'q', 'k' or 'v', got {self.kind!r}.")

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}.{self.kind}"


@dataclass(frozen=True)
class MLPInput:
    """Receiver: the input of the MLP of ``layer`` (the residual before its norm)."""

    layer: int

    def __str__(self) -> str:
        return f"MLP{self.layer}.in"


@dataclass(frozen=True)
class Logits:
    """Receiver: the final residual stream (before ``ln_final`` and the action head)."""

    def __str__(self) -> str:
        return "logits"


@dataclass(frozen=True)
class ResidPre:
    """Receiver: the residual stream entering block ``layer`` (``blocks.L.hook_resid_pre``).

    Everything from that block on reads it, so it replaces the whole stream there: it is
    given alone, as the only receiver of a path-patching call.
    """

    layer: int

    def __str__(self) -> str:
        return f"resid_pre{self.layer}"


Sender = Union[Head, MLP, Embed]  # noqa: UP007 (a runtime alias used in isinstance checks)
Receiver = Union[HeadInput, MLPInput, Logits, ResidPre]  # noqa: UP007

_HEAD = re.compile(r"^L(\d+)H(\d+)$", re.IGNORECASE)
_MLP = re.compile(r"^MLP(\d+)$", re.IGNORECASE)
_EMBED = re.compile(r"^(?:hook_)?(rtg|state|action|time)(?:_embed)?$", re.IGNORECASE)
_HEAD_INPUT = re.compile(r"^L(\d+)H(\d+)\.(q|k|v)$", re.IGNORECASE)
_MLP_INPUT = re.compile(r"^MLP(\d+)(?:\.in)?$", re.IGNORECASE)
_RESID_PRE = re.compile(r"^(?:blocks\.)?(?:resid_pre|(\d+)\.hook_resid_pre)(\d*)$", re.IGNORECASE)


def _parse_pos(text: str) -> tuple[Position, ...]:
    if not text:
        return ()
    return tuple(int(p) if re.fullmatch(r"-?\d+", p) else p for p in text.split(","))


def parse_sender(spec: Sender | str) -> Sender:
    """A sender node from its shorthand (nodes pass through unchanged).

    Shorthands: ``"L1H3"`` (head 3 of layer 1), ``"MLP0"``, ``"rtg_embed"`` (or
    ``"rtg"``, ``"hook_rtg_embed"``; likewise state, action, time), each optionally
    followed by ``@`` and comma-separated positions (``"L1H3@S9,-1"``).

    Raises:
        ConfigError: for text matching none of the shorthands.

    Example:
        >>> parse_sender("MLP0"), parse_sender("state@S9")
        (MLP(layer=0, pos=None), Embed(kind='state', pos=('S9',)))
    """
    if isinstance(spec, Head | MLP | Embed):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"a sender is a Head, MLP, Embed or shorthand string, got {spec!r}.")
    name, sep, pos_text = spec.strip().partition("@")
    pos = _parse_pos(pos_text) if sep else None
    if m := _HEAD.match(name):
        return Head(int(m[1]), int(m[2]), pos)
    if m := _MLP.match(name):
        return MLP(int(m[1]), pos)
    if m := _EMBED.match(name):
        return Embed(m[1].lower(), pos)  # type: ignore[arg-type]
    raise ConfigError(
        f"cannot parse sender {spec!r}; expected e.g. 'L1H3', 'MLP0', 'rtg_embed', "
        "'state_embed', 'action_embed', 'time_embed', optionally with '@S9,24' positions."
    )


def parse_receiver(spec: Receiver | str) -> Receiver:
    """A receiver node from its shorthand (nodes pass through unchanged).

    Shorthands: ``"L2H1.q"`` (or ``.k``, ``.v``), ``"MLP1"`` / ``"MLP1.in"``, ``"logits"``,
    ``"resid_pre1"`` (or ``"blocks.1.hook_resid_pre"``).

    Raises:
        ConfigError: for text matching none of the shorthands.

    Example:
        >>> parse_receiver("logits"), parse_receiver("MLP1")
        (Logits(), MLPInput(layer=1))
    """
    if isinstance(spec, HeadInput | MLPInput | Logits | ResidPre):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(
            f"a receiver is a HeadInput, MLPInput, Logits or shorthand string, got {spec!r}."
        )
    text = spec.strip()
    if m := _HEAD_INPUT.match(text):
        return HeadInput(int(m[1]), int(m[2]), m[3].lower())  # type: ignore[arg-type]
    if m := _MLP_INPUT.match(text):
        return MLPInput(int(m[1]))
    if text.lower() == "logits":
        return Logits()
    if (m := _RESID_PRE.match(text)) and (m[1] or m[2]) and not (m[1] and m[2]):
        return ResidPre(int(m[1] or m[2]))
    raise ConfigError(
        f"cannot parse receiver {spec!r}; expected e.g. 'L2H1.q', 'L2H1.k', 'L2H1.v', "
        "'MLP1' (or 'MLP1.in'), 'resid_pre1' or 'logits'."
    )


def parse_senders(specs: Sender | str | Sequence[Sender | str]) -> tuple[Sender, ...]:
    """One sender or a sequence of them -> a tuple of sender nodes (duplicates rejected).

    Example:
        >>> parse_senders(["L0H1", "MLP0"])
        (Head(layer=0, head=1, pos=None), MLP(layer=0, pos=None))
    """
    return _unique(tuple(parse_sender(s) for s in _as_sequence(specs)), "sender")


def parse_receivers(specs: Receiver | str | Sequence[Receiver | str]) -> tuple[Receiver, ...]:
    """One receiver or a sequence of them -> a tuple of receiver nodes (duplicates rejected).

    Example:
        >>> parse_receivers("logits")
        (Logits(),)
    """
    return _unique(tuple(parse_receiver(s) for s in _as_sequence(specs)), "receiver")


def _as_sequence(specs: object) -> Sequence:
    if isinstance(specs, str) or not isinstance(specs, Sequence):
        return (specs,)
    return specs


def _unique(nodes: tuple, role: str) -> tuple:
    if not nodes:
        raise ConfigError(f"give at least one {role}.")
    twice = sorted({str(n) for n in nodes if nodes.count(n) > 1})
    if twice:
        raise ConfigError(f"{role}s {twice} are listed more than once.")
    return nodes


def validate_node(node: Sender | Receiver, cfg: DTConfig) -> None:
    """Raise ConfigError if ``node`` names a layer, head or embedding ``cfg`` lacks
    (a HeadIndexError for a head outside ``0..n_heads - 1``, negative ones included).

    Example:
        >>> validate_node(Head(5, 0), DTConfig(n_layers=2, d_model=8, n_heads=2, d_mlp=8,
        ...                                    n_ctx=5))
        Traceback (most recent call last):
        ...
        dtlens.errors.ConfigError: L5H0: layer 5 is outside 0..1 (the model has 2 layers).
    """
    layer = getattr(node, "layer", None)
    if layer is not None and (
        isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < cfg.n_layers
    ):
        raise ConfigError(
            f"{node}: layer {layer!r} is outside 0..{cfg.n_layers - 1} "
            f"(the model has {cfg.n_layers} layers)."
        )
    head = getattr(node, "head", None)
    if head is not None and not is_head_index(head, cfg.n_heads):
        raise HeadIndexError(
            f"{node}: head {head!r} is outside 0..{cfg.n_heads - 1} "
            f"(the model has {cfg.n_heads} heads per layer)"
            f"{negative_head_hint(head, cfg.n_heads)}."
        )
    if isinstance(node, Embed) and node.kind == "rtg" and cfg.model_type != "decision_transformer":
        raise ConfigError(f"{node}: a {cfg.model_type} model has no RTG embedding.")


def reaches(sender: Sender, receiver: Receiver) -> bool:
    """Whether ``sender`` writes to the residual stream before ``receiver`` reads it.

    Embeddings reach everything; a head reaches the heads of later layers and the MLP
    of its own and later layers; an MLP reaches later layers. Every sender reaches
    :class:`Logits`; a :class:`ResidPre` of layer L is reached by the heads and MLPs of
    layers before L. Path patching gives 0 for a sender that reaches no receiver.

    Example:
        >>> reaches(Head(1, 0), HeadInput(1, 2, "q")), reaches(MLP(0), HeadInput(1, 2, "k"))
        (False, True)
    """
    if isinstance(receiver, Logits) or isinstance(sender, Embed):
        return True
    if isinstance(sender, Head) and isinstance(receiver, MLPInput):
        return sender.layer <= receiver.layer
    return sender.layer < receiver.layer


def resolve_positions(
    pos: tuple[Position, ...] | None, labels: Sequence[str], node: object = None
) -> list[int] | None:
    """Token positions of ``pos`` (ints, negative from the end, or labels like ``"S9"``).

    Returns None for ``pos=None`` (every position), else sorted unique indices.

    Raises:
        ConfigError: for an int out of range or a label not in ``labels``.

    Example:
        >>> resolve_positions(("S2", -1), ["R1", "S1", "A1", "R2", "S2"])
        [4]
    """
    if pos is None:
        return None
    n = len(labels)
    out = set()
    for p in pos:
        if isinstance(p, str):
            if p not in labels:
                raise ConfigError(f"{node}: position {p!r} is not a token label; labels: {labels}.")
            out.add(labels.index(p))
        elif -n <= p < n:
            out.add(p % n)
        else:
            raise ConfigError(
                f"{node}: position {p} is outside -{n}..{n - 1} (the batch has {n} tokens)."
            )
    return sorted(out)
