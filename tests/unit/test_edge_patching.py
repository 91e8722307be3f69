"""The DT graph and exact edge patching, against invariants, path patching and hook references.

- the graph's node and edge counts follow from the architecture (counted by hand);
- no edge gives the base run and every edge the source run, in both directions, with
  padding and with per-token embedding senders;
- one sender -> receiver edge equals path patching's ``"direct"`` mode (its own tests
  compare it with hand computations);
- a two-edge set equals a reference written here with TransformerLens hooks on the
  model itself (not the engine's plain forward).
"""

from __future__ import annotations

import pytest
import torch

from dtlens.analysis.circuits import DTGraph, Edge, edge_patching, parse_edge, path_patching
from dtlens.analysis.circuits.graph_runs import GraphRuns
from dtlens.analysis.circuits.nodes import MLP, Embed, Head, HeadInput, Logits, MLPInput
from dtlens.errors import BatchError, ConfigError, DTLensError
from tests.conftest import build_batch, build_model

ATOL = 1e-5


def logit_diff(logits):
    return logits[:, -1, 0] - logits[:, -1, 1]


@pytest.fixture(scope="module", params=["LN", "LNPre", None], ids=["LN", "LNPre", "no-norm"])
def setup(request):
    model = build_model(normalization=request.param)
    clean = build_batch(3, seed=0)
    corrupt = build_batch(3, seed=1, start_timestep=2)
    return model, clean, corrupt


def padded(batch):
    mask = torch.ones(batch.batch_size, batch.n_steps, dtype=torch.bool)
    mask[0, :2] = False
    mask[1, :1] = False
    return batch.replace(padding_mask=mask)


# ------------------------------------------------------------------------ the graph
def test_graph_counts_follow_the_architecture():
    model = build_model()  # 2 layers x 4 heads, with MLPs, a decision transformer
    graph = DTGraph(model)
    assert len(graph.senders) == 4 + 2 * (4 + 1)
    assert len(graph.receivers) == 2 * (4 * 3 + 1) + 1
    # into layer-0 heads: 4 embeddings x 12 inputs; MLP0: 4 embeddings + 4 heads;
    # layer-1 heads: (4 + 4 + 1) x 12; MLP1: 4 + 8 + 1; logits: every sender (14)
    assert len(graph.edges) == 48 + 8 + 108 + 13 + 14 == 191
    assert graph.reach.sum() == 191
    clone = DTGraph(build_model(model_type="clone"))
    assert Embed("rtg") not in clone.senders and len(clone.senders) == 13


def test_per_token_embeddings_split_each_embedding_by_the_tokens_it_writes():
    model, batch = build_model(), build_batch(n_steps=4)
    labels = model.token_labels(batch)  # R1 S1 A1 ... R4 S4: 11 tokens
    graph = DTGraph(model, token_embeddings=labels)
    embeds = [s for s in graph.senders if isinstance(s, Embed)]
    assert [str(s) for s in embeds[:5]] == [
        "rtg_embed@R1", "rtg_embed@R2", "rtg_embed@R3", "rtg_embed@R4", "state_embed@S1",
    ]  # fmt: skip
    assert len(embeds) == 4 + 4 + 3 + 11  # R, S, A (no A4), time at every token


def test_edges_parse_and_non_edges_are_refused():
    graph = DTGraph(build_model())
    edge = parse_edge(" L0H1 -> L1H2.v ")
    assert edge == Edge(Head(0, 1), HeadInput(1, 2, "v")) and str(edge) == "L0H1->L1H2.v"
    mask = graph.mask(["L0H1->L1H2.v", "MLP1->logits", "state->MLP0"])
    assert [str(e) for e in graph.edges_of(mask)] == [
        "state_embed->MLP0.in", "L0H1->L1H2.v", "MLP1->logits",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"L1H0->L0H2\.q is not an edge: L1H0 writes"):
        graph.index("L1H0->L0H2.q")
    with pytest.raises(ConfigError, match=r"L1H0->MLP0\.in is not an edge"):
        graph.index(Edge(Head(1, 0), MLPInput(0)))
    with pytest.raises(ConfigError, match="sender L5H0 is not a node of this graph"):
        graph.index("L5H0->logits")
    with pytest.raises(ConfigError, match="'SENDER->RECEIVER'"):
        parse_edge("L0H1")
    with pytest.raises(ConfigError, match="not edges of the graph"):
        graph.check_mask(torch.ones_like(graph.reach))
    with pytest.raises(ConfigError, match=r"\[\.\.\., 14, 27\]; got torch.bool \[14, 26\]"):
        graph.check_mask(torch.zeros(14, 26, dtype=torch.bool))


# ------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("pad", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("per_token", [False, True], ids=["whole", "per-token"])
def test_no_edge_is_the_base_run_and_every_edge_the_source_run(setup, direction, pad, per_token):
    model, clean, corrupt = setup
    if pad:
        clean, corrupt = padded(clean), padded(corrupt)
    graph = DTGraph(model, model.token_labels(clean) if per_token else None)
    runs = GraphRuns(model, clean, corrupt, logit_diff, graph, direction)
    with torch.no_grad():
        logits = runs.forward(torch.stack([torch.zeros_like(graph.reach), graph.reach]))
        base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
        torch.testing.assert_close(logits[:3], model(base), atol=ATOL, rtol=0)
        torch.testing.assert_close(logits[3:], model(source), atol=ATOL, rtol=0)
    values = edge_patching(model, clean, corrupt, logit_diff, [[], list(graph.edges)],
                           direction, graph=graph)  # fmt: skip
    # the restored fraction of the clean metric: no edge gives the base run, every edge the
    # source run (denoise: 0 then 1; noise: 1 then 0)
    expected = torch.tensor([0.0, 1.0] if direction == "denoise" else [1.0, 0.0])
    torch.testing.assert_close(values, expected, atol=1e-4, rtol=0)


def test_raw_values_and_a_scalar_metric(setup):
    model, clean, corrupt = setup
    raw = edge_patching(model, clean, corrupt, logit_diff, ["L0H1->L1H0.q", "MLP0->logits"],
                        normalize=False)  # fmt: skip
    scalar = edge_patching(model, clean, corrupt, lambda x: logit_diff(x).mean(),
                           ["L0H1->L1H0.q", "MLP0->logits"], normalize=False)  # fmt: skip
    torch.testing.assert_close(raw, scalar, atol=ATOL, rtol=0)
    assert raw.ndim == 0


# ------------------------------------------------------------- against path patching
@pytest.mark.parametrize(
    "sender, receiver",
    [("L0H1", "logits"), ("L1H3", "logits"), ("MLP0", "logits"), ("state_embed", "logits"),
     ("L0H2", "L1H0.q"), ("L0H2", "L1H1.k"), ("MLP0", "L1H3.v"), ("time_embed", "MLP1"),
     ("rtg_embed", "L0H2.q"), ("L1H0", "MLP1")],
)  # fmt: skip
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_one_edge_equals_direct_path_patching(setup, sender, receiver, direction):
    model, clean, corrupt = setup
    edge = f"{sender}->{receiver}"
    got = edge_patching(model, clean, corrupt, logit_diff, [edge], direction, normalize=False)
    expected = path_patching(model, clean, corrupt, sender, receiver, logit_diff, "direct",
                             direction, normalize=False)  # fmt: skip
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_a_per_token_embedding_edge_equals_path_patching_at_that_token(setup):
    model, clean, corrupt = setup
    got = edge_patching(model, clean, corrupt, logit_diff, ["state_embed@S3->L1H2.v"])
    expected = path_patching(model, clean, corrupt, "state_embed@S3", "L1H2.v", logit_diff)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


# ----------------------------------------------------------- against a hook reference
def hook_reference(model, clean, corrupt):
    """Denoise {L0H1 -> L1H0.v, L1H0 -> logits} with TransformerLens hooks on the model.

    L1H0's value input reads the corrupt residual plus L0H1's clean-minus-corrupt write;
    the logits read the final residual with L1H0's live write (changed by the first
    edge) replaced by its clean write. Everything else runs as in the corrupt run.
    """
    core = model.core
    _, src = model.run_with_cache(clean)
    _, base = model.run_with_cache(corrupt)
    w_o0, w_o1 = core.blocks[0].attn.W_O[1], core.blocks[1].attn.W_O[0]
    write = (src["blocks.0.attn.hook_z"][:, :, 1] - base["blocks.0.attn.hook_z"][:, :, 1]) @ w_o0
    resid = base["blocks.1.hook_resid_pre"] + write
    ln = core.blocks[1].ln1
    x = resid
    if model.cfg.normalization is not None:
        x = (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True)
                                              + model.cfg.eps).sqrt()  # fmt: skip
        if model.cfg.normalization == "LN":
            x = x * ln.weight + ln.bias
    attn = core.blocks[1].attn
    v_head0 = x @ attn.W_V[0] + attn.b_V[0]
    live = {}

    def set_v(act, hook):
        act = act.clone()
        act[:, :, 0] = v_head0
        return act

    def keep_z(act, hook):
        live["z"] = act[:, :, 0].clone()

    def final(act, hook):
        clean_write = src["blocks.1.attn.hook_z"][:, :, 0] @ w_o1
        return act + clean_write - live["z"] @ w_o1

    hooks = [("blocks.1.attn.hook_v", set_v), ("blocks.1.attn.hook_z", keep_z),
             ("ln_final.hook_in", final)]  # fmt: skip
    with torch.no_grad():
        return model.run_with_hooks(corrupt, fwd_hooks=hooks)


def test_two_edges_equal_a_hook_reference(setup):
    model, clean, corrupt = setup
    expected = logit_diff(hook_reference(model, clean, corrupt)).mean()
    got = edge_patching(model, clean, corrupt, logit_diff, ["L0H1->L1H0.v", "L1H0->logits"],
                        normalize=False)  # fmt: skip
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # and the two edges are not additive: each alone differs from the pair's effect
    alone = edge_patching(model, clean, corrupt, logit_diff, [["L0H1->L1H0.v"], ["L1H0->logits"]],
                          normalize=False)  # fmt: skip
    assert alone.shape == (2,) and not torch.allclose(alone, got.expand(2), atol=1e-4)


def test_sets_batch_like_single_calls(setup):
    model, clean, corrupt = setup
    graph = DTGraph(model)
    sets = [list(graph.edges[i::7]) for i in range(7)]
    together = edge_patching(model, clean, corrupt, logit_diff, sets, max_batch=6)
    alone = torch.stack([edge_patching(model, clean, corrupt, logit_diff, s) for s in sets])
    torch.testing.assert_close(together, alone, atol=ATOL, rtol=0)
    masks = torch.stack([graph.mask(s) for s in sets])
    torch.testing.assert_close(edge_patching(model, clean, corrupt, logit_diff, masks), alone,
                               atol=ATOL, rtol=0)  # fmt: skip


# ------------------------------------------------------------------------ bad input
def test_bad_inputs_are_named(setup):
    model, clean, corrupt = setup
    call = lambda edges, **kw: edge_patching(model, clean, corrupt, logit_diff, edges, **kw)  # noqa: E731
    with pytest.raises(ConfigError, match="wrap one edge in a list"):
        call("L0H1->logits")
    with pytest.raises(ConfigError, match=r"L1H0->L0H0\.k is not an edge"):
        call(["L1H0->L0H0.k"])
    with pytest.raises(ConfigError, match="direction must be 'denoise' or 'noise'"):
        call([], direction="both")
    with pytest.raises(ConfigError, match="max_batch must be a positive int"):
        call([], max_batch=0)
    with pytest.raises(ConfigError, match=r"got shape \[27\]"):
        call(torch.zeros(27, dtype=torch.bool))
    with pytest.raises(BatchError, match="same window: obs is"):
        edge_patching(model, clean, build_batch(3, n_steps=3), logit_diff, [])
    with pytest.raises(DTLensError, match="normalize=False"):
        edge_patching(model, clean, clean, logit_diff, [])
    with pytest.raises(ConfigError, match=r"token_embeddings=model\.token_labels"):
        graph = DTGraph(model, model.token_labels(build_batch(n_steps=3)))
        edge_patching(model, clean, corrupt, logit_diff, [], graph=graph)
    model.core.blocks[0].attn.hook_z.add_hook(lambda act, hook: act)
    try:
        with pytest.raises(ConfigError, match="remove them first"):
            call([])
    finally:
        model.reset_hooks()


def test_nodes_are_the_graphs_own():
    graph = DTGraph(build_model())
    assert graph.senders[:4] == (Embed("rtg"), Embed("state"), Embed("action"), Embed("time"))
    assert graph.senders[4:9] == (Head(0, 0), Head(0, 1), Head(0, 2), Head(0, 3), MLP(0))
    assert graph.receivers[-2:] == (MLPInput(1), Logits())
