"""Edge scores (EAP, EAP-IG), faithfulness and ACDC, against autograd and exact patching.

- EAP scores equal ``write difference . gradient`` with the gradient taken by autograd
  through TransformerLens hooks on the model itself (written here);
- EAP-IG with more steps is the average of the gradients at the interpolated
  embeddings (checked against the same reference at each alpha); with one step it
  takes the same code path as EAP (a consistency check, not an independent one);
- on a model whose path from an edge to the metric is linear, EAP equals exact edge
  patching of that edge alone;
- faithfulness is 0 for the empty circuit and 1 for the full graph, and equals exact
  edge patching of the complement; ACDC's circuit is as faithful as it reports;
- on a model whose weights are set by hand so that one path carries everything, ACDC
  returns exactly that path's edges (faithfulness 1) and EAP scores them 1 and every
  other edge exactly 0: the circuit is known in advance, not computed by dtlens.

Some checks below compare two dtlens entry points that share the engine (the curve
against ``circuit_faithfulness``, ACDC's kept edges against its own costs); they guard
the bookkeeping between them, not the engine's values.
"""

from __future__ import annotations

import pytest
import torch

from dtlens.analysis.circuits import (
    DTGraph,
    EdgeScores,
    acdc,
    circuit_faithfulness,
    edge_attribution_patching,
    edge_patching,
    faithfulness_curve,
)
from dtlens.analysis.circuits.faithfulness import default_sizes
from dtlens.errors import ConfigError
from dtlens.plotting.circuits import plot_circuit, plot_faithfulness
from tests.conftest import build_batch, build_model


def logit_diff(logits):
    return logits[:, -1, 0] - logits[:, -1, 1]


@pytest.fixture(scope="module")
def setup():
    model = build_model()
    return model, build_batch(3, seed=0), build_batch(3, seed=1, start_timestep=2)


def receiver_gradient(model, base, receiver, alpha=0.0, source=None):
    """d mean(metric) / d (receiver's input) by autograd through hooks on the model.

    A zero tensor that requires grad is added where the receiver reads the residual
    stream: at ``ln_final.hook_in`` (logits), ``blocks.L.ln2.hook_in`` (an MLP's input
    only), or, for a head's q/k/v, by recomputing that head's input projection from
    ``resid_pre + delta`` in the hook. ``alpha`` moves the four embedding hooks that
    fraction of the way to ``source``'s.
    """
    n, n_pos, d = base.batch_size, base.n_tokens(3), model.cfg.d_model
    delta = torch.zeros(n, n_pos, d, requires_grad=True)
    hooks = []
    kind = str(receiver)
    if alpha:
        _, src = model.run_with_cache(source)
        for name in model.embedding_hook_names:
            hooks.append((name, lambda act, hook, s=src[name]: act + alpha * (s - act)))
    if kind == "logits":
        hooks.append(("ln_final.hook_in", lambda act, hook: act + delta))
    elif kind.startswith("MLP"):
        hooks.append((f"blocks.{receiver.layer}.ln2.hook_in", lambda act, hook: act + delta))
    else:
        layer, head = receiver.layer, receiver.head
        store = {}
        hooks.append((f"blocks.{layer}.hook_resid_pre",
                      lambda act, hook: store.__setitem__("resid", act)))  # fmt: skip

        def project(act, hook):
            x = model.core.blocks[layer].ln1(store["resid"] + delta)
            attn = model.core.blocks[layer].attn
            weight = getattr(attn, f"W_{receiver.kind.upper()}")[head]
            bias = getattr(attn, f"b_{receiver.kind.upper()}")[head]
            act = act.clone()
            act[:, :, head] = x @ weight + bias
            return act

        hooks.append((f"blocks.{layer}.attn.hook_{receiver.kind}", project))
    logits = model.run_with_hooks(base, fwd_hooks=hooks)
    (grad,) = torch.autograd.grad(logit_diff(logits).mean(), delta)
    return grad


def write_difference(model, clean, corrupt, sender):
    _, src = model.run_with_cache(clean)
    _, base = model.run_with_cache(corrupt)
    name = str(sender)
    if name.startswith("L"):
        z = f"blocks.{sender.layer}.attn.hook_z"
        w_o = model.core.blocks[sender.layer].attn.W_O[sender.head]
        return (src[z][:, :, sender.head] - base[z][:, :, sender.head]) @ w_o
    if name.startswith("MLP"):
        out = f"blocks.{sender.layer}.hook_mlp_out"
        return src[out] - base[out]
    raise AssertionError(f"no write difference for {sender} in this test")


EDGES = ["L0H1->logits", "MLP0->L1H2.q", "L0H3->L1H0.k", "L0H2->L1H1.v", "L1H2->MLP1",
         "MLP1->logits", "L0H0->MLP0"]  # fmt: skip


@pytest.mark.parametrize("edge", EDGES)
def test_eap_is_the_write_difference_dotted_with_the_autograd_gradient(setup, edge):
    model, clean, corrupt = setup
    scores = edge_attribution_patching(model, clean, corrupt, logit_diff, "eap", normalize=False)
    e = scores.graph.edges[scores.graph.edges.index(_parse(edge))]
    grad = receiver_gradient(model, corrupt, e.receiver)
    expected = (write_difference(model, clean, corrupt, e.sender) * grad).sum()
    assert scores.score(edge) == pytest.approx(float(expected.detach()), abs=1e-5)


def test_eap_ig_averages_the_gradient_at_the_interpolated_embeddings(setup):
    model, clean, corrupt = setup
    # consistency: one step evaluates the gradient at alpha=0 only, as EAP does
    one = edge_attribution_patching(model, clean, corrupt, logit_diff, "eap-ig", steps=1)
    eap = edge_attribution_patching(model, clean, corrupt, logit_diff, "eap")
    torch.testing.assert_close(one.values, eap.values, atol=0, rtol=0)
    ig = edge_attribution_patching(model, clean, corrupt, logit_diff, "eap-ig", steps=3,
                                   normalize=False)  # fmt: skip
    e = _parse("L0H2->L1H1.v")
    grads = [receiver_gradient(model, corrupt, e.receiver, k / 3, clean) for k in range(3)]
    expected = (write_difference(model, clean, corrupt, e.sender) * sum(grads) / 3).sum()
    assert ig.score(e) == pytest.approx(float(expected.detach()), abs=1e-5)
    assert ig.info["steps"] == 3 and not torch.allclose(ig.values, eap.values)


def test_normalized_scores_divide_each_pair_by_its_gap(setup):
    model, clean, corrupt = setup
    one_pair = [b[:1] for b in (clean, corrupt)]
    raw = edge_attribution_patching(model, *one_pair, logit_diff, "eap", normalize=False)
    normed = edge_attribution_patching(model, *one_pair, logit_diff, "eap")
    gap = logit_diff(model(one_pair[0])) - logit_diff(model(one_pair[1]))
    torch.testing.assert_close(normed.values, raw.values / gap.detach(), atol=1e-5, rtol=1e-4)


def linear_model():
    """No LayerNorm and MLPs that act linearly (ReLU far into its linear region)."""
    model = build_model(normalization=None, act_fn="relu")
    with torch.no_grad():
        for block in model.core.blocks:
            block.mlp.b_in.add_(100.0)
    return model


def test_eap_equals_exact_edge_patching_where_the_path_to_the_metric_is_linear():
    model = linear_model()
    clean, corrupt = build_batch(3, seed=0), build_batch(3, seed=1, start_timestep=2)
    scores = edge_attribution_patching(model, clean, corrupt, logit_diff, "eap", normalize=False)
    graph = scores.graph
    # into the logits, the last MLP and the last layer's value inputs the rest is linear
    # (attention patterns read q and k, which these edges do not change)
    linear = [e for e in graph.edges if str(e.receiver) in ("logits", "MLP1.in")
              or (str(e.receiver).endswith(".v") and e.receiver.layer == 1)]  # fmt: skip
    exact = edge_patching(model, clean, corrupt, logit_diff, [[e] for e in linear],
                          normalize=False) - edge_patching(model, clean, corrupt, logit_diff, [],
                                                           normalize=False)  # fmt: skip
    estimate = torch.tensor([scores.score(e) for e in linear])
    assert len(linear) == 14 + 13 + 4 * 9 and exact.abs().max() > 1e-3
    torch.testing.assert_close(estimate, exact, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- faithfulness
def test_faithfulness_is_zero_empty_one_full_and_exact_patching_of_the_complement(setup):
    model, clean, corrupt = setup
    graph = DTGraph(model)
    circuit = list(graph.edges[::5])
    rest = [e for e in graph.edges if e not in circuit]
    values = circuit_faithfulness(model, clean, corrupt, logit_diff, [[], graph.edges, circuit])
    torch.testing.assert_close(values[:2], torch.tensor([0.0, 1.0]), atol=1e-4, rtol=0)
    complement = edge_patching(model, clean, corrupt, logit_diff, rest, "noise")
    torch.testing.assert_close(values[2], complement, atol=1e-5, rtol=0)


def test_the_curve_keeps_the_top_scored_edges(setup):
    model, clean, corrupt = setup
    scores = edge_attribution_patching(model, clean, corrupt, logit_diff)
    curve = faithfulness_curve(model, clean, corrupt, logit_diff, scores, sizes=[0, 3, 191])
    # bookkeeping: size 3 is the top 3 edges (both run the same engine; its values are
    # checked against edge patching and the hand-set model elsewhere in this file)
    top3 = circuit_faithfulness(model, clean, corrupt, logit_diff, [scores.top(3)])
    torch.testing.assert_close(curve.faithfulness[1], top3[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(curve.faithfulness[[0, 2]], torch.tensor([0.0, 1.0]), atol=1e-4,
                               rtol=0)  # fmt: skip
    assert curve.smallest(0.999) == 191 and curve.at(3) == float(curve.faithfulness[1])
    assert curve.n_edges_total == 191 and curve.method == "eap-ig"
    with pytest.raises(ConfigError, match=r"sizes must be ints in 0\.\.191"):
        faithfulness_curve(model, clean, corrupt, logit_diff, scores, sizes=[192])
    assert default_sizes(191)[:17] == list(range(17)) and default_sizes(191)[-1] == 191
    assert default_sizes(5) == [0, 1, 2, 3, 4, 5]


def test_ranking_is_by_magnitude(setup):
    graph = DTGraph(setup[0])
    values = torch.zeros(len(graph.senders), len(graph.receivers))
    values[graph.index("L0H1->logits")] = -3.0
    values[graph.index("MLP0->L1H2.q")] = 2.0
    values[graph.index("state->MLP1")] = 0.5
    scores = EdgeScores(graph, values, "hand")
    assert [str(e) for e in scores.top(2)] == ["L0H1->logits", "MLP0->L1H2.q"]
    assert [str(e) for e in scores.above(1.0)] == ["L0H1->logits", "MLP0->L1H2.q"]
    assert int(scores.mask(3).sum()) == 3
    with pytest.raises(ConfigError, match=r"k must be an int in 0\.\.191"):
        scores.top(500)
    with pytest.raises(ConfigError, match=r"\[14, 27\]"):
        EdgeScores(graph, torch.zeros(3, 3), "bad")


# ------------------------------------------------------------------------------ ACDC
def test_acdc_reports_its_exact_faithfulness_and_keeps_only_costly_edges(setup):
    model, clean, corrupt = setup
    result = acdc(model, clean, corrupt, logit_diff, threshold=0.05)
    exact = circuit_faithfulness(model, clean, corrupt, logit_diff, [result.edges])
    assert result.faithfulness == pytest.approx(float(exact[0]), abs=1e-5)
    assert 0 < len(result.edges) < 191 and result.info["forwards"] == 192
    for edge in result.edges:  # bookkeeping: a kept edge's recorded cost passed the threshold
        assert result.scores.score(edge) >= 0.05
    everything = acdc(model, clean, corrupt, logit_diff, threshold=1e9)
    assert everything.edges == [] and everything.faithfulness == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ConfigError, match="threshold must be a number >= 0"):
        acdc(model, clean, corrupt, logit_diff, threshold=-1)


def one_path_model():
    """A model whose only path from the input to the logits is state -> L1H2.v -> logits.

    Set by hand (no norms, so no component mixes the residual dimensions):

    - every head's output projection is zero except L1H2's, which writes only into
      residual dimensions 16..31; every MLP's output projection is zero;
    - L1H2's query and key weights are zero: its pattern is uniform (causal), whatever
      its q/k inputs; its output is scaled up (a clean - corrupt gap well above 0);
    - the state embedding writes only into dimensions 0..15, the unembedding reads only
      16..31: the state reaches the logits only through L1H2's values.

    With clean and corrupt differing only in their observations, the circuit is
    {state_embed -> L1H2.v, L1H2 -> logits}, and that path is linear.
    """
    model = build_model(normalization=None)
    block0, block1 = (b._original_component for b in model.core.blocks)
    heads = slice(16, 24)  # L1H2's columns of W_O / rows of W_Q, W_K
    with torch.no_grad():
        for block in (block0, block1):
            block.mlp._original_component.fc_out._original_component.weight.zero_()
        block0.attn._original_component.o._original_component.weight.zero_()
        attn = block1.attn._original_component
        o = attn.o._original_component.weight  # [d_model, n_heads * d_head]
        o[:, :16].zero_()
        o[:, 24:].zero_()
        o[:16, heads].zero_()
        o[:, heads].mul_(30.0)
        attn.q._original_component.weight[heads].zero_()
        attn.k._original_component.weight[heads].zero_()
        model.state_embed.weight[16:].zero_()
        model.state_embed.weight.mul_(5.0)
        model.core.unembed._original_component.weight[:, :16].zero_()
    return model


def test_acdc_and_eap_find_the_one_path_a_hand_set_model_has():
    model = one_path_model()
    clean = build_batch(3, seed=0)
    corrupt = clean.replace(obs=build_batch(3, seed=1).obs)  # only the states differ
    live = {_parse("state->L1H2.v"), _parse("L1H2->logits")}
    gap = logit_diff(model(clean)) - logit_diff(model(corrupt))
    assert gap.abs().min() > 1e-2  # the path carries a difference in every pair

    result = acdc(model, clean, corrupt, logit_diff, threshold=0.01)
    assert set(result.edges) == live and len(result.edges) == 2
    assert result.faithfulness == pytest.approx(1.0, abs=1e-4)

    # the path is linear (uniform pattern, no norm, no MLP on it): patching either edge
    # alone restores the whole gap, so EAP's estimate is exactly 1 for each
    scores = edge_attribution_patching(model, clean, corrupt, logit_diff, "eap")
    graph = scores.graph
    for edge in live:
        assert scores.score(edge) == pytest.approx(1.0, abs=1e-4)
    dead = [e for e in graph.edges if e not in live]
    assert len(dead) == 189 and all(scores.score(e) == 0.0 for e in dead)
    assert set(scores.top(2)) == live


def test_scores_refuse_bad_arguments(setup):
    model, clean, corrupt = setup
    with pytest.raises(ConfigError, match="method must be 'eap' or 'eap-ig'"):
        edge_attribution_patching(model, clean, corrupt, logit_diff, "ig")
    with pytest.raises(ConfigError, match="steps must be a positive int"):
        edge_attribution_patching(model, clean, corrupt, logit_diff, steps=0)


# ----------------------------------------------------------------------------- plots
def test_circuit_plot_draws_each_edge_with_width_by_score(setup):
    graph = DTGraph(setup[0])
    values = torch.zeros(len(graph.senders), len(graph.receivers))
    values[graph.index("L0H1->logits")] = -2.0
    values[graph.index("MLP0->L1H2.v")] = 1.0
    fig = plot_circuit(EdgeScores(graph, values, "hand"), ["L0H1->logits", "MLP0->L1H2.v"])
    lines = {t.text: t for t in fig.data if t.mode == "lines"}
    assert set(lines) == {"L0H1->logits: -2.0000", "MLP0->L1H2.v: +1.0000"}
    wide, narrow = lines["L0H1->logits: -2.0000"], lines["MLP0->L1H2.v: +1.0000"]
    assert wide.line.width == pytest.approx(8.5) and narrow.line.width == pytest.approx(4.5)
    assert narrow.line.dash == "dash" and wide.line.color != narrow.line.color


def test_faithfulness_plot_holds_the_curve(setup):
    model, clean, corrupt = setup
    scores = edge_attribution_patching(model, clean, corrupt, logit_diff)
    curve = faithfulness_curve(model, clean, corrupt, logit_diff, scores, sizes=[0, 5, 50, 191])
    fig = plot_faithfulness(curve)
    assert list(fig.data[0].x) == [0, 5, 50, 191]
    assert list(fig.data[0].y) == pytest.approx(curve.faithfulness.tolist())


def _parse(edge):
    from dtlens.analysis.circuits import parse_edge

    return parse_edge(edge)
