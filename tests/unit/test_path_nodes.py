"""Path-patching nodes: shorthands (round trips), reach, and receivers' inputs vs the cache."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dtlens.analysis.circuits.node_io import receiver_input, receiver_inputs
from dtlens.analysis.circuits.nodes import (
    MLP,
    Embed,
    Head,
    HeadInput,
    Logits,
    MLPInput,
    parse_receiver,
    parse_receivers,
    parse_sender,
    parse_senders,
    reaches,
    resolve_positions,
)
from dtlens.errors import ConfigError
from tests.conftest import build_batch, build_model

senders_st = st.one_of(
    st.builds(Head, st.integers(0, 9), st.integers(0, 9), st.none()),
    st.builds(
        Head, st.integers(0, 9), st.integers(0, 9), st.lists(st.integers(-30, 30), max_size=3)
    ),
    st.builds(MLP, st.integers(0, 9), st.lists(st.sampled_from(["S1", "R2", "A3"]), max_size=2)),
    st.builds(Embed, st.sampled_from(["rtg", "state", "action", "time"]), st.none()),
)
receivers_st = st.one_of(
    st.builds(HeadInput, st.integers(0, 9), st.integers(0, 9), st.sampled_from("qkv")),
    st.builds(MLPInput, st.integers(0, 9)),
    st.just(Logits()),
)


@given(senders_st)
def test_sender_shorthand_round_trips(node):
    assert parse_sender(str(node)) == node


@given(receivers_st)
def test_receiver_shorthand_round_trips(node):
    assert parse_receiver(str(node)) == node


def test_shorthands_and_reach():
    assert parse_senders(["l0h1", "mlp1@S2", "hook_time_embed"]) == (
        Head(0, 1), MLP(1, ("S2",)), Embed("time"))  # fmt: skip
    assert parse_receivers(["MLP1", "L1H0.K", "Logits"]) == (
        MLPInput(1), HeadInput(1, 0, "k"), Logits())  # fmt: skip
    table = {
        (Head(0, 0), HeadInput(1, 0, "q")): True, (Head(1, 0), HeadInput(1, 0, "q")): False,
        (Head(1, 0), MLPInput(1)): True, (MLP(1), MLPInput(1)): False,
        (MLP(0), HeadInput(1, 0, "v")): True, (MLP(1), HeadInput(1, 0, "v")): False,
        (Embed("rtg"), HeadInput(0, 0, "k")): True, (MLP(1), Logits()): True,
    }  # fmt: skip
    assert {pair: reaches(*pair) for pair in table} == table
    assert resolve_positions(("S2", -1, 0), ["R1", "S1", "A1", "R2", "S2"]) == [0, 4]


@pytest.fixture(scope="module", params=["LN", "LNPre", None], ids=["LN", "LNPre", "no-norm"])
def cached(request):
    """A model with each norm variant and its cache of one batch."""
    model = build_model(normalization=request.param)
    with torch.no_grad():
        _, cache = model.run_with_cache(build_batch(seed=0))
    return model, cache


def test_receiver_input_recomputes_the_models_own_q_k_v(cached):
    model, clean_cache = cached
    resid = clean_cache["blocks.1.hook_resid_pre"]
    for kind in "qkv":
        got = receiver_input(model, HeadInput(1, 3, kind), resid)
        torch.testing.assert_close(got, clean_cache[f"blocks.1.attn.hook_{kind}"][:, :, 3])


def test_receiver_inputs_of_one_layer_equal_the_models_own(cached):
    """Several heads and kinds at once (one norm, one matmul per kind) = the cached q/k/v."""
    model, clean_cache = cached
    resid = clean_cache["blocks.1.hook_resid_pre"]
    readers = [HeadInput(1, 3, "q"), HeadInput(1, 0, "q"), HeadInput(1, 2, "v"), MLPInput(1)]
    got = receiver_inputs(model, readers, resid)
    for r in readers[:3]:
        torch.testing.assert_close(
            got[r], clean_cache[f"blocks.1.attn.hook_{r.kind}"][:, :, r.head]
        )
    assert got[MLPInput(1)] is resid


def test_receiver_inputs_refuses_heads_of_two_layers(cached):
    model, clean_cache = cached
    with pytest.raises(ConfigError, match=r"share a layer; got layers \[0, 1\]"):
        receiver_inputs(
            model,
            [HeadInput(0, 1, "q"), HeadInput(1, 1, "q")],
            clean_cache["blocks.1.hook_resid_pre"],
        )
