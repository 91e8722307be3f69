"""Every bad input gets a named DTLensError that says the fix (issue 15 §2).

One test per bad input, injecting exactly that input into an otherwise valid call and
checking the error's class and the part of its message that states the fix. Then the
guard: the valid inputs of the other tests (random 0/1 batches, left-padded batches,
training windows, continuous-control batches) still pass, and batches derived from a
checked one are not scanned again.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtlens.analysis import (
    Head,
    HeadInput,
    acdc,
    activation_patching,
    attribution_patching,
    circuit_faithfulness,
    edge_attribution_patching,
    edge_patching,
    head_svd,
    ov_circuit,
    path_patching,
    path_patching_sweep,
    qk_circuit,
    set_rtg,
)
from dtlens.env.channels import N_CHANNELS
from dtlens.errors import (
    BatchError,
    ConfigError,
    DTLensError,
    EmptyBatchError,
    HeadIndexError,
    HookShapeError,
    MetricError,
    NonFiniteError,
    ObservationError,
    OneHotError,
    PaddingMaskError,
)
from dtlens.model import TrajectoryBatch, batch_checks
from dtlens.model import batch as batch_module
from dtlens.model.config import ONE_HOT_CHANNELS
from dtlens.model.validation import check_head, checked_hook
from dtlens.plotting import attention_from_cache, plot_attention
from tests.conftest import build_batch, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def pair():
    return build_batch(seed=0), build_batch(seed=1)


def fields(batch: TrajectoryBatch, **changes) -> dict:
    """The batch's fields as TrajectoryBatch(**...) arguments, with some changed."""
    out = {name: getattr(batch, name) for name in ("obs", "actions", "rtg", "timesteps")}
    out["padding_mask"] = batch.padding_mask
    return {**out, **changes}


def logit_diff(logits):
    return logits[:, -1, 0] - logits[:, -1, 1]


def continuous_batch(state_dim: int = 5, act_dim: int = 3) -> TrajectoryBatch:
    """A continuous-control window, as test_from_hf builds them (vector states)."""
    g = torch.Generator().manual_seed(0)
    return TrajectoryBatch(
        obs=torch.randn(2, 4, state_dim, generator=g),
        actions=torch.rand(2, 3, act_dim, generator=g) * 2 - 1,
        rtg=3 * torch.rand(2, 4, generator=g),
        timesteps=torch.arange(10, 14).repeat(2, 1),
    )


# ------------------------------------------------------------------ observations
@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (0.5, "a fraction"),
        (2.0, "a count"),
        (-1.0, "a negative value"),
        (1 - 2**-24, "the float just below 1"),
    ],
)
def test_grid_observations_that_are_not_one_hot(bad, what):
    obs = build_batch().obs.clone()
    obs[1, 2, 3, 4, 5] = bad
    with pytest.raises(OneHotError, match=r"dtlens\.encode_observation\(image\)") as err:
        TrajectoryBatch(**fields(build_batch(), obs=obs))
    assert "at [1, 2, 3, 4, 5]" in str(err.value), what
    assert isinstance(err.value, ObservationError)


def test_a_raw_minigrid_image_in_one_hot_channels_is_not_one_hot():
    raw = torch.randint(0, 11, (2, 4, 7, 7, 20))  # integer indices, not one-hot
    with pytest.raises(OneHotError, match="values other than 0 and 1"):
        TrajectoryBatch(**fields(build_batch(), obs=raw))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_grid_observations_with_nan_or_inf(bad):
    obs = build_batch().obs.clone()
    obs[0, 1, 2, 3, 4] = bad
    with pytest.raises(NonFiniteError, match=r"first at \[0, 1, 2, 3, 4\].*must be finite"):
        TrajectoryBatch(**fields(build_batch(), obs=obs))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_vector_observations_with_nan_or_inf(bad):
    batch = continuous_batch()
    obs = batch.obs.clone()
    obs[1, 3, 2] = bad
    with pytest.raises(NonFiniteError, match=r"obs holds .*first at \[1, 3, 2\].*must be finite"):
        TrajectoryBatch(**fields(batch, obs=obs))


def test_one_hot_check_is_exact_for_zero_one_data():
    """-0.0, integer and bool one-hot grids pass; a huge batch is checked in chunks."""
    obs = build_batch().obs.clone()
    obs[0, 0, 0, 0, 0] = -0.0
    TrajectoryBatch(**fields(build_batch(), obs=obs))
    TrajectoryBatch(**fields(build_batch(), obs=obs.to(torch.uint8)))
    TrajectoryBatch(**fields(build_batch(), obs=obs.bool()))
    assert ONE_HOT_CHANNELS == N_CHANNELS  # the light config's copy of the env's count
    big = torch.zeros(batch_checks._CHUNK * 3 + 7)
    big[::3] = 1
    assert batch_checks.is_zero_one(big)
    big[-1] = 0.25  # in the last chunk
    assert not batch_checks.is_zero_one(big)


# -------------------------------------------------------------------------- RTG
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_rtg_nan_or_inf_in_a_batch(bad):
    rtg = build_batch().rtg.clone()
    rtg[1, 2] = bad
    with pytest.raises(NonFiniteError, match=r"first at \[1, 2\].*must be finite numbers"):
        TrajectoryBatch(**fields(build_batch(), rtg=rtg))


def test_rtg_nan_written_in_place_is_caught_by_check_values(model):
    """A model never gets a NaN RTG through a built batch; an in-place edit afterwards is
    what ``check_values`` catches (``model.validate`` can call it)."""
    batch = build_batch()
    batch.rtg[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="must be finite numbers"):
        batch.check_values(["rtg"])
    with pytest.raises(BatchError, match="no value check for"):
        batch.check_values(["actions"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor([[0.1], [np.nan]])])
def test_set_rtg_with_nan_or_inf(bad):
    with pytest.raises(NonFiniteError, match=r"must be finite numbers \(e\.g\. 0\.9"):
        set_rtg(build_batch(), bad)


@pytest.mark.parametrize("bad", ["0.9", None, True, {"rtg": 0.9}, [1j], object()])
def test_set_rtg_with_a_non_number(bad):
    with pytest.raises(BatchError, match=r"set_rtg needs a number.*set_rtg\(batch, 0\.9\)"):
        set_rtg(build_batch(), bad)


def test_set_rtg_still_takes_numbers_and_tensors():
    batch = build_batch()
    assert set_rtg(batch, 1).rtg.unique().tolist() == [1.0]
    assert set_rtg(batch, np.float32(0.5)).rtg.unique().tolist() == [0.5]
    per_row = set_rtg(batch, torch.tensor([[0.1], [0.2]]))
    assert per_row.rtg[:, 0].tolist() == pytest.approx([0.1, 0.2])


def test_cli_rtg_nan_is_refused(monkeypatch, capsys):
    import dtlens.model.checkpoint
    from dtlens.cli import main

    # `dtlens preferences` loads its model with dtlens.model.checkpoint.load
    monkeypatch.setattr(dtlens.model.checkpoint, "load", lambda _name: build_model())
    assert main(["preferences", "--rtg", "nan", "--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "initial_rtg must be finite" in err and "e.g. 0.9" in err


# -------------------------------------------------------------------- timesteps
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16])
def test_small_integer_timesteps(dtype):
    batch = build_batch()
    with pytest.raises(BatchError, match=r"must be int64 \(or int32\).*timesteps\.long\(\)"):
        TrajectoryBatch(**fields(batch, timesteps=batch.timesteps.to(dtype)))


def test_uint8_discrete_actions():
    batch = build_batch()
    with pytest.raises(BatchError, match=r"actions\.long\(\)"):
        TrajectoryBatch(**fields(batch, actions=batch.actions.to(torch.uint8)))


def test_int32_timesteps_and_actions_still_run(model):
    batch = build_batch()
    int32 = TrajectoryBatch(
        **fields(batch, timesteps=batch.timesteps.int(), actions=batch.actions.int())
    )
    with torch.no_grad():
        torch.testing.assert_close(model(int32), model(batch))


# ----------------------------------------------------------------- empty batches
def test_an_empty_batch():
    batch = build_batch()
    with pytest.raises(EmptyBatchError, match="pass at least one window"):
        TrajectoryBatch(**{k: None if v is None else v[:0] for k, v in fields(batch).items()})
    with pytest.raises(EmptyBatchError, match="check that the selection keeps any"):
        batch[torch.zeros(2, dtype=torch.bool)]


# ------------------------------------------------------------------ padding mask
@pytest.mark.parametrize(
    "mask",
    [
        [[True, False, True, True], [True, True, True, True]],  # a hole
        [[True, True, True, True], [True, True, False, True]],  # a hole in row 1
        [[False, True, False, True], [False, False, True, True]],  # alternating
    ],
)
def test_a_padding_mask_that_is_not_left_padding(mask):
    with pytest.raises(PaddingMaskError, match=r"left-padded.*batch\.left_pad\(n_steps"):
        TrajectoryBatch(**fields(build_batch(), padding_mask=torch.tensor(mask)))


def test_a_padding_mask_ending_in_padding():
    mask = torch.tensor([[True, True, True, True], [False, True, True, False]])
    with pytest.raises(PaddingMaskError, match=r"row 1 .*last step must be real"):
        TrajectoryBatch(**fields(build_batch(), padding_mask=mask))


# ------------------------------------------------------------------- user hooks
def test_a_hook_returning_the_wrong_shape_is_named(model):
    def keep_first_channel(act, hook):
        return act[..., :1]

    name = "blocks.0.hook_resid_pre"
    act = model.run_with_cache(build_batch(), names_filter=name)[1][name]
    with pytest.raises(HookShapeError) as err:  # checked_hook itself, outside any forward
        checked_hook(name, keep_first_channel)(act, model.hook_dict[name])
    message = str(err.value)
    assert "keep_first_channel" in message and repr(name) in message
    assert "[2, 11, 1]" in message and "[2, 11, 32]" in message
    assert "return a tensor of the activation's shape" in message


def test_a_hook_returning_a_non_tensor_is_named_by_its_hook_point(model):
    name_filter = lambda name: name == "hook_rtg_embed"  # noqa: E731
    hook = model.hook_dict["hook_rtg_embed"]
    with pytest.raises(HookShapeError, match=r"'hook_rtg_embed' returned a list.*return None"):
        checked_hook(name_filter, lambda act, hook: [1])(torch.zeros(2, 4, 32), hook)


def test_checked_hooks_pass_good_hooks_through(model):
    batch = build_batch()
    calls = []

    def record(act, hook):
        calls.append(hook.name)

    def double(act, hook):
        return 2 * act

    name = "blocks.1.hook_resid_pre"
    with torch.no_grad():
        expected = model.run_with_hooks(batch, fwd_hooks=[(name, double)])
        got = model.run_with_hooks(
            batch,
            fwd_hooks=[(name, checked_hook(name, double)), (name, checked_hook(name, record))],
        )
    torch.testing.assert_close(got, expected)
    assert calls == [name] and checked_hook(name, double).__name__ == "double"


# ------------------------------------------------- a corrupt "batch" that is not one
NOT_BATCHES = [
    pytest.param(lambda b: b.obs, r"a Tensor of shape .*dtlens\.TrajectoryBatch\(", id="tensor"),
    pytest.param(lambda b: None, r"None; edit the clean batch \(patch_observation", id="None"),
    pytest.param(lambda b: [b[0], b[1]], r"TrajectoryBatch\.cat\(", id="list"),
]

ENTRY_POINTS = {
    "activation_patching": lambda m, c, x, f: activation_patching(
        m, c, x, f, "z", by=("layer", "head"), show_progress=False
    ),
    "attribution_patching": lambda m, c, x, f: attribution_patching(
        m, c, x, f, "z", by=("layer", "head"), show_progress=False
    ),
    "path_patching": lambda m, c, x, f: path_patching(m, c, x, "L0H1", "logits", f),
    "path_patching_sweep": lambda m, c, x, f: path_patching_sweep(
        m, c, x, "logits", f, show_progress=False
    ),
    "edge_patching": lambda m, c, x, f: edge_patching(m, c, x, f, [], show_progress=False),
    "edge_attribution_patching": lambda m, c, x, f: edge_attribution_patching(m, c, x, f, "eap"),
    "acdc": lambda m, c, x, f: acdc(m, c, x, f, threshold=1e9),
    "circuit_faithfulness": lambda m, c, x, f: circuit_faithfulness(m, c, x, f, [[]]),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("make", "fix"), NOT_BATCHES)
def test_a_corrupt_batch_that_is_not_a_batch(model, pair, entry, make, fix):
    clean, _ = pair
    with pytest.raises(BatchError, match=r"corrupt must be a TrajectoryBatch, got .*" + fix):
        ENTRY_POINTS[entry](model, clean, make(clean), logit_diff)


def test_a_clean_batch_that_is_not_a_batch(model, pair):
    _, corrupt = pair
    for entry in ("activation_patching", "path_patching", "edge_patching"):
        with pytest.raises(BatchError, match=r"clean must be a TrajectoryBatch, got None; build"):
            ENTRY_POINTS[entry](model, None, corrupt, logit_diff)


# ------------------------------------------------------------ a metric of NaN
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_metric_returning_nan_in_every_analysis(model, pair, entry):
    def nan_metric(logits):
        return torch.full((logits.shape[0],), float("nan"))

    with pytest.raises(MetricError, match=r"non-finite values.*check it on the clean"):
        ENTRY_POINTS[entry](model, *pair, nan_metric)


# ---------------------------------------------------------------- head indices
def test_negative_head_indices_in_weight_analyses(model):
    for analysis in (qk_circuit, ov_circuit, head_svd):
        with pytest.raises(HeadIndexError, match=r"head=-1 must be an int in 0\.\.3.*pass 3"):
            analysis(model, 0, -1)
        with pytest.raises(ConfigError, match="head=4"):
            analysis(model, 0, 4)


def test_negative_head_indices_in_attention_plots(model):
    with torch.no_grad():
        _, cache = model.run_with_cache(build_batch())
    for call in (
        lambda: attention_from_cache(cache, 0, -1),
        lambda: plot_attention(cache, layer=0, head=-1),
    ):
        with pytest.raises(HeadIndexError, match=r"head -1 is out of range.*pass 3"):
            call()
    with pytest.raises(BatchError, match="head 4 is out of range"):  # still a BatchError
        attention_from_cache(cache, 0, 4)
    assert torch.equal(
        attention_from_cache(cache, 0, np.int64(3)), attention_from_cache(cache, 0, 3)
    )


@pytest.mark.parametrize(
    ("senders", "receivers"),
    [([Head(0, -1)], "logits"), ("embeds", [HeadInput(1, -2, "q")])],
    ids=["sender", "receiver"],
)
def test_negative_head_indices_in_path_patching(model, pair, senders, receivers):
    with pytest.raises(HeadIndexError, match=r"head -\d is outside 0\.\.3.*pass 3"):
        if senders == "embeds":
            path_patching(model, *pair, "rtg_embed", receivers, logit_diff)
        else:
            path_patching(model, *pair, senders, receivers, logit_diff)


def test_check_head_names_the_range():
    check_head(0, 4)
    for bad, fragment in ((-1, "pass 3 for the last head"), (2.0, "got a float"), (True, "bool")):
        with pytest.raises(HeadIndexError, match=fragment):
            check_head(bad, 4)


# -------------------------------------------------------------------- the guard
def test_valid_batches_still_pass():
    """Random 0/1 grids, a left-padded batch, training windows and continuous batches."""
    batch = build_batch(batch_size=3, n_steps=3)
    padded = batch.left_pad(6, pad_action=7)
    assert padded.padding_mask[:, :3].logical_not().all()
    TrajectoryBatch(**fields(padded))  # a built left-padded batch passes its own check
    TrajectoryBatch(**fields(padded, padding_mask=torch.ones(3, 6, dtype=torch.bool)))
    continuous_batch().left_pad(6, pad_action=0.0)
    raw = TrajectoryBatch(**fields(batch, obs=torch.randint(0, 11, (3, 3, 7, 7, 3)).float()))
    assert raw.obs.max() > 1  # raw 7x7x3 images are not one-hot: no 0/1 check
    meta = TrajectoryBatch(**{k: v.to("meta") for k, v in fields(batch).items() if v is not None})
    assert meta.obs.is_meta  # shapes only: nothing to scan


def test_training_windows_are_left_padded():
    from dtlens.data.windows import WindowSampler
    from tests.unit.test_windows import hand_demos

    for one_hot in (True, False):  # one-hot grids, and raw 7x7x3 images
        windows = list(WindowSampler(hand_demos(), n_steps=4, one_hot=one_hot).iterate(10))
        mask = windows[0].batch.padding_mask
        assert not mask.all() and torch.equal(mask, mask.cummax(dim=1).values)


def test_derived_batches_are_not_scanned_again(monkeypatch):
    """Moving, indexing, repeating, joining and padding a checked batch, or replacing
    one field, scan no values the batch already had (so validation stays one pass)."""
    batch = build_batch(batch_size=3)
    scans = []
    # the names batch.py calls them by
    monkeypatch.setattr(batch_module, "check_obs_values", lambda obs: scans.append("obs"))
    monkeypatch.setattr(batch_module, "is_finite", lambda t: scans.append("finite") or True)
    batch.to("cpu")
    batch[1]
    batch[torch.tensor([0, 2])]
    batch.repeat(2)
    TrajectoryBatch.cat([batch, batch])
    batch.left_pad(6, pad_action=7)
    batch.replace(actions=batch.actions.flip(1))
    assert scans == []
    batch.replace(rtg=batch.rtg + 1)
    assert scans == ["finite"]  # the new RTG only, not the observations
    with pytest.raises(BatchError, match="no field 'reward'"):
        batch.replace(reward=batch.rtg)


def test_every_new_error_is_a_dtlens_error_with_a_docstring():
    import dtlens.errors as errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, DTLensError) and cls.__doc__, name


def test_a_user_hook_of_the_wrong_shape_is_named_by_the_model():
    """``model.hooks`` / ``run_with_hooks`` wrap user hooks with ``checked_hook``."""
    from dtlens.errors import HookShapeError

    model, batch = build_model(), build_batch()

    def one_head(act, hook):
        return act[:, :, :1]  # drops three of the four heads

    with pytest.raises(HookShapeError, match=r"one_head on 'blocks\.0\.attn\.hook_z'"):
        model.run_with_hooks(batch, fwd_hooks=[("blocks.0.attn.hook_z", one_head)])
    same = model.run_with_hooks(batch, fwd_hooks=[("blocks.0.attn.hook_z", lambda a, hook: a)])
    torch.testing.assert_close(same, model(batch))  # a well-shaped hook still runs


def test_an_rtg_set_to_nan_after_the_batch_was_built_is_refused_by_the_model():
    from dtlens.errors import NonFiniteError

    model, batch = build_model(), build_batch()
    batch.rtg[0, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="rtg"):
        model(batch)
