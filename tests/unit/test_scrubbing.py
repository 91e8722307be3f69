"""Causal scrubbing against independent expectations on a tiny seeded model.

- the identity hypothesis gives the clean run exactly, the empty one the random inputs'
  runs (recovered 1 and 0), both checked against plain ``model(batch)`` calls;
- one claim, and a claim with a child claim (in the reference pass and in a pass of its
  own), against resample ablations written here with TransformerLens hooks on the model
  itself, from the draws the result reports;
- a circuit kept with the identity relation (``from_edges``) against the existing edge
  patching engine (``GraphRuns``: every other edge from the random input);
- draws: equivalent under the claimed feature, stratified, reproducible from the seed;
- the named errors for bad hypotheses, datasets and metrics.
"""

from __future__ import annotations

import pytest
import torch

from dtlens.analysis.circuits.graph_runs import GraphRuns
from dtlens.analysis.scrubbing import (
    Claim,
    Hypothesis,
    Scrubber,
    ScrubbingDataset,
    causal_scrubbing,
    decision_metric,
    through_heads,
)
from dtlens.errors import BatchError, ConfigError, DTLensError, HypothesisError
from dtlens.plotting.scrubbing import plot_scrubbing
from tests.conftest import build_batch, build_model

pytestmark = pytest.mark.usefixtures("one_thread")
N = 6


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def data():
    batch = build_batch(batch_size=N, seed=3)
    return ScrubbingDataset(batch, {"a": [0, 0, 1, 1, 2, 2], "b": [0, 1, 0, 1, 0, 1]})


@pytest.fixture(scope="module")
def metric(model, data):
    return decision_metric(model, data, actions=(0, 1))


@pytest.fixture(scope="module")
def scrubber(model, data, metric):
    return Scrubber(model, data, metric)


def scored(model, metric, batch, index):
    with torch.no_grad():
        return metric(model(batch), index)


def hooked(model, metric, batch, index, hooks):
    with torch.no_grad():
        return metric(model.run_with_hooks(batch, fwd_hooks=hooks), index)


def head_write(model, batch, layer, head):
    """What one head writes to the residual stream on ``batch`` ([B, pos, d_model])."""
    _, cache = model.run_with_cache(batch, names_filter=[f"blocks.{layer}.attn.hook_z"])
    z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head]
    return z @ model.core.blocks[layer].attn.W_O[head]


def test_identity_gives_the_clean_run(model, data, metric, scrubber):
    ref = torch.arange(N).repeat_interleave(4)
    clean = scored(model, metric, data.batch[ref], ref)
    for hypothesis in (Hypothesis.identity(), Hypothesis.from_edges(scrubber.graph.edges)):
        result = scrubber.run(hypothesis, n_samples=4, seed=1)
        assert torch.allclose(result.values, clean, atol=1e-5)
        assert result.scrubbed == pytest.approx(result.clean, abs=1e-5)
        assert result.recovered == pytest.approx(1.0, abs=1e-3) and result.stderr < 1e-3
    assert result.clean == pytest.approx(float(clean.mean()), abs=1e-5)


def test_empty_gives_the_random_inputs_runs(model, data, metric, scrubber):
    result = scrubber.run(Hypothesis.empty(), n_samples=5, seed=2)
    ref, rand = result.draws["reference"], result.draws["random"]
    expected = scored(model, metric, data.batch[rand], ref)  # a hand-written full resample
    assert torch.allclose(result.values, expected, atol=1e-5)
    assert result.resampled == pytest.approx(float(expected.mean()), abs=1e-5)
    assert result.recovered == pytest.approx(0.0, abs=1e-3) and result.n_worlds == 1
    assert causal_scrubbing(model, data, metric, Hypothesis.empty(), 5, 2).scrubbed == (
        pytest.approx(result.scrubbed, abs=1e-6)
    )


def test_one_claim_equals_a_hand_written_resample_ablation(model, data, metric, scrubber):
    """Claim: L0H1 carries feature a. Only its direct path to the logits is read in the
    reference pass (nothing else is claimed), so the scrubbed logits are the random
    input's run with L0H1's write there replaced by its write on the equivalent input."""
    result = scrubber.run(Hypothesis([Claim("L0H1", "a")]), n_samples=4, seed=0)
    ref, rand, x1 = (result.draws[k] for k in ("reference", "random", "claim 0"))
    delta = head_write(model, data.batch[x1], 0, 1) - head_write(model, data.batch[rand], 0, 1)
    expected = hooked(model, metric, data.batch[rand], ref,
                      [("ln_final.hook_in", lambda x, hook: x + delta)])  # fmt: skip
    assert torch.allclose(result.values, expected, atol=1e-5)
    assert not torch.allclose(expected, scored(model, metric, data.batch[rand], ref), atol=1e-3)


@pytest.mark.parametrize("feature", ["identity", "b"])
def test_a_claim_with_a_child_equals_two_hooked_runs(model, data, metric, scrubber, feature):
    """MLP1 -> logits (feature ``feature``), computed from L0H1 on an input equivalent
    under a and from its pass's random input elsewhere. Hand-written: MLP1's input in
    that pass gets L0H1's write swapped (ln2.hook_in is the MLP's input only); the
    reference run on the random input then gets that MLP1 output."""
    child = Claim("L0H1->MLP1.in", "a")
    result = scrubber.run(Hypothesis([Claim("MLP1->logits", feature, [child])]), 4, seed=5)
    d = result.draws
    ref, rand, x1 = d["reference"], d["random"], d["claim 0.0"]
    if feature == "identity":  # MLP1 stays in the reference pass
        world_input, world_random = ref, rand
    else:  # MLP1 is computed in a pass of its own
        world_input, world_random = d["claim 0"], d["random 0"]
    assert (feature == "identity") == ("random 0" not in d)
    assert (
        torch.tensor(data.features["a"])[x1] == torch.tensor(data.features["a"])[world_input]
    ).all()
    delta = head_write(model, data.batch[x1], 0, 1) - head_write(
        model, data.batch[world_random], 0, 1
    )
    stored = {}

    def keep(x, hook):
        stored["mlp"] = x.detach().clone()

    with torch.no_grad():
        model.run_with_hooks(data.batch[world_random], fwd_hooks=[
            ("blocks.1.ln2.hook_in", lambda x, hook: x + delta),
            ("blocks.1.hook_mlp_out", keep)])  # fmt: skip
    expected = hooked(model, metric, data.batch[rand], ref,
                      [("blocks.1.hook_mlp_out", lambda x, hook: stored["mlp"])])  # fmt: skip
    assert torch.allclose(result.values, expected, atol=1e-5)
    assert not torch.allclose(expected, scored(model, metric, data.batch[rand], ref), atol=1e-3)


def test_a_circuit_kept_with_identity_is_edge_patching_from_the_random_input(
    model, data, metric, scrubber
):
    graph = scrubber.graph
    circuit = ["state_embed->L0H1.v", "L0H1->MLP0.in", "MLP0->L1H2.k", "L1H2->logits",
               "MLP1->logits", "rtg_embed->MLP1.in"]  # fmt: skip
    result = scrubber.run(Hypothesis.from_edges(circuit), n_samples=3, seed=4)
    ref, rand = result.draws["reference"], result.draws["random"]
    runs = GraphRuns(model, data.batch[ref], data.batch[rand], lambda x: x[:, -1, 0], graph,
                     "noise")  # fmt: skip
    outside = graph.reach & ~graph.mask(circuit)  # these edges carry the random input's value
    with torch.no_grad():
        expected = metric(runs.forward(outside[None]), ref)
    assert torch.allclose(result.values, expected, atol=1e-5)


def test_through_heads_claims_every_edge(model, data, metric, scrubber):
    graph = scrubber.graph
    exact = through_heads(graph, ["L0H1", "L1H0"], carried="identity", rest="identity")
    assert scrubber.run(exact, 3).scrubbed == pytest.approx(scrubber.run(exact, 3).clean, abs=1e-5)
    h = through_heads(graph, ["L0H1"], carried="a", rest="b")
    assert h.name == "a via L0H1" and [c.feature for c in h.claims] == ["a", "b", "identity"]
    result = scrubber.run(h, n_samples=4)
    a, b = torch.tensor(data.features["a"]), torch.tensor(data.features["b"])
    ref = result.draws["reference"]
    assert (a[result.draws["claim 0"]] == a[ref]).all() and (
        b[result.draws["claim 1"]] == b[ref]
    ).all()
    with pytest.raises(HypothesisError, match="one or more heads"):
        through_heads(graph, ["MLP0"])
    by_hand = Hypothesis([
        Claim("L0H1", "a"),
        Claim(["rtg_embed", "state_embed", "action_embed", "time_embed"], "b"),
        Claim(["L0H0", "L0H2", "L0H3", "MLP0", "L1H0", "L1H1", "L1H2", "L1H3", "MLP1"],
              children=[]),
    ])  # fmt: skip
    assert torch.equal(scrubber.run(by_hand, n_samples=4).values, result.values)


def test_draws_are_equivalent_stratified_and_seeded(scrubber):
    h = Hypothesis([Claim("L1H0", ("a", "b")), Claim("L1H1", "a"), Claim("MLP1", "any")])
    one, again = scrubber.run(h, n_samples=8, seed=7), scrubber.run(h, n_samples=8, seed=7)
    other = scrubber.run(h, n_samples=8, seed=8)
    assert all(torch.equal(one.draws[k], again.draws[k]) for k in one.draws)
    assert torch.equal(one.values, again.values) and one.recovered == again.recovered
    assert not torch.equal(one.draws["claim 1"], other.draws["claim 1"])
    a = torch.tensor(scrubber.dataset.features["a"])
    ref = one.draws["reference"]
    assert torch.equal(one.draws["claim 0"], ref)  # a and b together pin each window down
    assert (a[one.draws["claim 1"]] == a[ref]).all()
    # stratified: 8 draws among the 2 windows sharing a -> each exactly 4 times
    counts = torch.stack([torch.bincount(one.draws["claim 1"][i * 8 : (i + 1) * 8], minlength=N)
                          for i in range(N)])  # fmt: skip
    assert set(counts[counts > 0].tolist()) == {4}
    assert set(one.draws) == {"reference", "random", "claim 0", "claim 1", "claim 2"}


def test_from_edges_is_the_nested_tree(scrubber):
    """A non-identity claim whose sender is computed from identity-kept senders in its pass."""
    flat = Hypothesis.from_edges(
        {"L1H0->logits": "a", "L0H1->L1H0.v": "identity", "state_embed->L0H1.v": "identity"}
    )
    nested = Hypothesis([Claim("L1H0->logits", "a", children=[
        Claim("L0H1->L1H0.v", children=[Claim("state_embed->L0H1.v")])])])  # fmt: skip
    one, two = scrubber.run(flat, n_samples=4, seed=9), scrubber.run(nested, n_samples=4, seed=9)
    assert one.n_worlds == two.n_worlds == 2 and set(one.draws) == set(two.draws)
    assert torch.equal(one.values, two.values)


def test_hypothesis_text_and_trees(scrubber):
    h = Hypothesis.from_edges({"L0H1->MLP1.in": "a", "MLP1->logits": "identity"}, name="x")
    tree = h.tree(scrubber.graph)
    assert [str(c) for c in tree] == ["[L0H1->MLP1.in | a: []]",
                                      "[MLP1->logits | identity: []]"]  # fmt: skip
    assert str(Hypothesis([Claim("MLP1->logits", children=[Claim("L0H1->MLP1.in", "a")])])) == (
        "hypothesis: [MLP1->logits | identity: [L0H1->MLP1.in | a]]"
    )


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ([Claim("L0H1", "colour")], "not features of this dataset"),
        ([Claim("L7H0->logits")], "L7H0 is not a node"),
        ([Claim("L0H9")], "not a sender"),
        ([Claim("MLP1->logits", children=[Claim("L0H1->MLP0.in")])], "parent's senders"),
        ([Claim("state_embed->L0H1.v", children=[])], "take no children"),
        ([Claim("L0H1->logits", "a"), Claim("L0H1->logits", "b")], "claimed twice"),
        ([Claim("MLP0->logits", children=[Claim("L1H0")])], "no edge here"),
    ],
)
def test_bad_hypotheses_name_the_problem(scrubber, claims, match):
    with pytest.raises(HypothesisError, match=match):
        scrubber.run(Hypothesis(claims))


def test_bad_inputs_raise_named_errors(model, data, metric, scrubber):
    with pytest.raises(HypothesisError, match="feature"):
        Claim("L0H1", feature=3)
    with pytest.raises(HypothesisError, match="edges"):
        Claim([])
    with pytest.raises(HypothesisError, match="labelled both"):
        Hypothesis.from_edges({"L0H1": "a", "L0H1->logits": "b"}).tree(scrubber.graph)
    with pytest.raises(HypothesisError, match="expected a Hypothesis"):
        scrubber.run([Claim("L0H1")])
    with pytest.raises(ConfigError, match="n_samples"):
        scrubber.run(Hypothesis.empty(), n_samples=0)
    with pytest.raises(BatchError, match="one value per window"):
        ScrubbingDataset(data.batch, {"a": [0, 1]})
    with pytest.raises(HypothesisError, match="reserved"):
        ScrubbingDataset(data.batch, {"any": list(range(N))})
    padded = build_batch(batch_size=2, n_steps=4).left_pad(6, pad_action=7)
    padded.padding_mask[1, 1] = True
    with pytest.raises(BatchError, match="padded differently"):
        ScrubbingDataset(padded, {})
    with pytest.raises(ConfigError, match="ScrubbingDataset"):
        Scrubber(model, data.batch, metric)
    bad = Scrubber(model, data, lambda logits, index: logits[:, -1])
    with pytest.raises(DTLensError, match="one value per row"):
        bad.run(Hypothesis.empty())
    flat = Scrubber(model, data, lambda logits: logits[:, -1, 0])  # ignores the reference
    assert flat.run(Hypothesis.identity(), 2).clean == pytest.approx(
        float(scored(model, lambda x, i: x[:, -1, 0], data.batch, None).mean()), abs=1e-5
    )


def test_decision_metric_names_a_bad_action(model, data, metric):
    """Actions by MiniGrid name are the indices (left 0, right 1); a typo or an index the
    7-action model lacks is a ConfigError naming it, before any run."""
    by_name = decision_metric(model, data, actions=("left", "right"))
    assert torch.equal(by_name.answer, metric.answer) and torch.equal(by_name.wrong, metric.wrong)
    assert by_name.name == "logit diff chosen - other of left/right at S[-1]"
    with pytest.raises(ConfigError, match="unknown action 'lfet'; valid names: left, right"):
        decision_metric(model, data, actions=("lfet", "right"))
    with pytest.raises(ConfigError, match=r"action 7 must be a name or an int in 0\.\.6"):
        decision_metric(model, data, actions=(0, 7))
    with pytest.raises(ConfigError, match="action -1 must be"):
        decision_metric(model, data, actions=(-1, 0))


def test_plot_scrubbing(scrubber):
    results = [scrubber.run(h, 2) for h in (Hypothesis.identity(), Hypothesis.empty())]
    fig = plot_scrubbing(results, title="t")
    assert list(fig.data[0].x) == ["identity", "empty"]
    assert [round(y, 3) + 0.0 for y in fig.data[0].y] == [1.0, 0.0]
    assert len(fig.layout.shapes) == 2  # the clean and resampled references
    with pytest.raises(BatchError, match="one value per hypothesis"):
        plot_scrubbing({"a": 1.0}, stderr={"b": 0.1})
    with pytest.raises(BatchError, match="at least one"):
        plot_scrubbing({})
