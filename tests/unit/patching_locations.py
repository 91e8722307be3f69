"""What the patching tests' one-location-at-a-time references share."""

from __future__ import annotations


def location_index(hook: str, loc: dict[str, int]) -> tuple:
    """The activation index (after the batch dim) of one swept location, written by hand
    from each hook's layout (not from dtlens' sweep table)."""
    pos, head, neuron = loc.get("pos"), loc.get("head"), loc.get("neuron")
    every = slice(None)
    if hook in ("z", "q", "k", "v"):  # [batch, pos, head, d_head]
        return (every if pos is None else pos, head)
    if hook == "pattern":  # [batch, head, query, key]
        return (head,) if pos is None else (head, pos)
    if hook == "mlp_post":  # [batch, pos, neuron]
        return (every if pos is None else pos, neuron)
    return (pos,)  # [batch, pos, d_model]
