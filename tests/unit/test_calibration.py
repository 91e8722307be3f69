"""Tests of batched rollouts (dtlens.training.evaluate) and calibration curves.

References are independent of the code under test: a sequential one-environment loop
written here (batch-1 forwards, the documented sampling rule), a hand-wired "scripted"
model whose greedy action depends only on the timestep (so every outcome is known in
advance), and hand-computed Wilson intervals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dtlens
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, encode_observation, make_env
from dtlens.errors import ConfigError, EnvError
from dtlens.model import TrajectoryBatch
from dtlens.training.calibration import CalibrationResult, calibration_curve, wilson_interval
from dtlens.training.evaluate import make_rollout_evaluator, resolve_layouts, rollout
from tests.conftest import build_model

MAX_STEPS = 12


@pytest.fixture(scope="module")
def model():
    return build_model(max_timestep=MAX_STEPS)  # 4-step context, random weights


def sequential_rollout(model, rtg, seed, options, temperature, max_steps=MAX_STEPS):
    """One episode, one env, one batch-1 forward per step (the reference)."""
    env = make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False)
    obs, _ = env.reset(seed=seed, options=options)
    images, actions, rtgs = [obs["image"]], [], [rtg]
    rng = np.random.default_rng([1, seed])  # documented: [ACTION_RNG_STREAM, seed]
    total, window = 0.0, model.cfg.n_timesteps
    for t in range(max_steps):
        lo = max(0, t + 1 - window)
        batch = TrajectoryBatch(
            obs=encode_observation(torch.as_tensor(np.stack(images[lo:])))[None],
            actions=torch.tensor(actions[lo:], dtype=torch.long).reshape(1, -1),
            rtg=torch.tensor(rtgs[lo:], dtype=torch.float32)[None],
            timesteps=torch.arange(lo, t + 1)[None],
        )
        with torch.no_grad():
            logits = model.action_logits(batch)[0, -1]
        if temperature == 0:
            action = int(logits.argmax())
        else:
            p = torch.softmax(logits.double() / temperature, -1).numpy()
            action = int(np.searchsorted(np.cumsum(p), rng.random(), side="right"))
        obs, reward, term, trunc, _ = env.step(action)
        images.append(obs["image"])
        actions.append(action)
        total += reward
        rtgs.append(rtgs[-1] - reward)
        if term or trunc:
            break
    return total, len(actions), tuple(actions)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_batched_rollout_equals_sequential(model, temperature):
    seeds = [3, 4, 5, 6, 7, 8]
    rtgs = [0.9, 0.0, 0.5, 0.9, 0.2, 0.7]
    res = rollout(
        model, initial_rtg=rtgs, seeds=seeds, temperature=temperature, max_steps=MAX_STEPS
    )
    for i, (seed, rtg) in enumerate(zip(seeds, rtgs, strict=True)):
        reward, length, actions = sequential_rollout(model, rtg, seed, None, temperature)
        assert res.actions[i] == actions
        assert res.lengths[i] == length
        assert res.rewards[i] == pytest.approx(reward)
    # one forward per step for all live episodes
    assert res.forwards == res.lengths.max()


def test_sampling_is_not_greedy(model):
    greedy = rollout(model, initial_rtg=0.9, n_episodes=6, temperature=0.0, max_steps=MAX_STEPS)
    hot = rollout(model, initial_rtg=0.9, n_episodes=6, temperature=5.0, max_steps=MAX_STEPS)
    assert greedy.actions != hot.actions


@pytest.mark.parametrize(
    ("padding", "dedupe"), [("masked", True), ("none", False), ("masked", False)]
)
def test_padding_and_dedupe_do_not_change_outcomes(model, padding, dedupe):
    kwargs = dict(
        initial_rtg=[0.9, 0.9, 0.1, 0.1] * 2,
        seeds=[0] * 8,
        layouts="balanced",
        temperature=1.0,
        max_steps=MAX_STEPS,
    )
    reference = rollout(model, **kwargs)
    other = rollout(model, padding=padding, dedupe=dedupe, **kwargs)
    assert other.actions == reference.actions
    assert other.rewards.tolist() == reference.rewards.tolist()
    if not dedupe:  # without de-duplication every live row is forwarded
        assert other.rows_forwarded == int(reference.lengths.sum())


def test_dedupe_forwards_each_distinct_context_once(model):
    # greedy, same seed, same layout, same RTG: 8 identical episodes
    res = rollout(
        model, initial_rtg=0.5, seeds=[1] * 8, layouts=["key/top-ball"] * 8, max_steps=MAX_STEPS
    )
    assert len(set(res.actions)) == 1
    assert res.rows_forwarded == res.lengths[0]


def test_original_padding_feeds_padding_as_tokens(model):
    # without the mask, the padding tokens are read: outcomes generally change
    a = rollout(model, initial_rtg=0.9, n_episodes=8, temperature=1.0, max_steps=MAX_STEPS)
    b = rollout(
        model,
        initial_rtg=0.9,
        n_episodes=8,
        temperature=1.0,
        max_steps=MAX_STEPS,
        padding="original",
    )
    assert a.actions != b.actions


def test_padding_follows_the_model_by_default(model):
    # a dtlens model (trained with the mask) plays unpadded; an original checkpoint
    # (context_padding "tokens") plays with the padding run as tokens, as it was trained
    kwargs = dict(rtgs=[0.0, 0.9], episodes_per_rtg=8, temperature=1.0, max_steps=MAX_STEPS)
    default = calibration_curve(model, **kwargs)
    assert default.settings["padding"] == "none"
    tokens = build_model(max_timestep=MAX_STEPS)
    tokens.metadata["context_padding"] = "tokens"
    result = calibration_curve(tokens, **kwargs)
    explicit = calibration_curve(tokens, padding="original", **kwargs)
    assert result.settings["padding"] == "original"
    np.testing.assert_array_equal(result.rewards, explicit.rewards)
    np.testing.assert_array_equal(result.lengths, explicit.lengths)
    res = rollout(tokens, initial_rtg=0.9, n_episodes=8, temperature=1.0, max_steps=MAX_STEPS)
    original = rollout(
        tokens,
        initial_rtg=0.9,
        n_episodes=8,
        temperature=1.0,
        max_steps=MAX_STEPS,
        padding="original",
    )
    assert res.actions == original.actions
    unpadded = rollout(
        tokens, initial_rtg=0.9, n_episodes=8, temperature=1.0, max_steps=MAX_STEPS, padding="none"
    )
    assert res.actions != unpadded.actions  # the choice matters for this model


def scripted_model(plan, max_timestep=MAX_STEPS):
    """A model whose logits depend only on the timestep: argmax at step t = plan[t].

    Every block, embedding and positional weight is zeroed except the time embedding,
    whose row t is 10 * e_{plan[t]}; LayerNorm of that vector peaks at plan[t] and
    W_U copies the first 7 residual dimensions to the logits.
    """
    m = build_model(max_timestep=max_timestep)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for name, p in m.named_parameters():
            if "ln_final" in name and name.endswith("weight"):
                p.fill_(1.0)
        m.core.unembed._original_component.weight.copy_(torch.eye(7, m.cfg.d_model))
        for t in range(max_timestep + 1):
            m.time_embed.weight[t, plan[min(t, len(plan) - 1)]] = 10.0
    return m


def test_calibration_of_a_scripted_model_is_known_exactly():
    # forward x4, left, forward: reaches the top target in 6 steps. The top target is the
    # rewarded one in key/top-key and ball/top-ball (SCENARIOS 0 and 3), the wrong one in
    # the other two, whatever the RTG.
    model = scripted_model([2, 2, 2, 2, 0, 2])
    result = calibration_curve(model, rtgs=[0.0, 0.5, 1.0], episodes_per_rtg=8, max_steps=MAX_STEPS)
    win = 1 - 0.9 * 6 / MAX_STEPS
    expected = [win, 0.0, 0.0, win] * 2
    assert result.rewards.shape == (3, 8)
    for row in result.rewards:
        assert row.tolist() == pytest.approx(expected)
    assert result.success_rate.tolist() == [0.5, 0.5, 0.5]
    assert result.lengths.tolist() == [[6] * 8] * 3
    assert result.layouts == tuple(s.name for s in SCENARIOS) * 2
    assert result.mean_reward == pytest.approx([win / 2] * 3)
    # normal band: sample sd of four `win` and four 0 (ddof 1) over sqrt(8)
    sd = math.sqrt(4 * (win / 2) ** 2 * 2 / 7)
    lo, hi = result.reward_ci()
    assert hi - lo == pytest.approx(2 * 1.959964 * sd / math.sqrt(8), rel=1e-5)


def test_scripted_model_truncates_when_it_never_turns():
    model = scripted_model([2])  # forward into the wall forever
    res = rollout(model, initial_rtg=0.9, n_episodes=4, layouts="balanced", max_steps=MAX_STEPS)
    assert res.lengths.tolist() == [MAX_STEPS] * 4
    assert not res.terminated.any() and not res.success.any()


def test_wilson_interval_hand_values():
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half = 1.96*sqrt(0.025 + 0.0096)/1.384
    lo, hi = wilson_interval(5, 10, z=1.96)
    half = 1.96 * math.sqrt(0.25 / 10 + 1.96**2 / 400) / (1 + 1.96**2 / 10)
    assert float(lo) == pytest.approx(0.5 - half) and float(hi) == pytest.approx(0.5 + half)
    # at 0 / n and n / n the interval ends at 0 / 1 and reaches z²/n / (1 + z²/n) inside
    lo, hi = wilson_interval(np.array([0, 10]), 10, z=1.96)
    inner = (1.96**2 / 10) / (1 + 1.96**2 / 10)
    assert lo.tolist() == pytest.approx([0.0, 1 - inner])
    assert hi.tolist() == pytest.approx([inner, 1.0])
    # the ends are exact (not merely clipped), for arrays and for single counts
    lo, hi = wilson_interval(np.array([[0, 3], [7, 7]]), 7)
    assert lo[0, 0] == 0.0 and hi[1, 1] == 1.0 and hi[1, 0] == 1.0 and lo.shape == (2, 2)
    one = wilson_interval(9, 10)
    assert all(type(v) is float for v in one)
    assert one[0] == wilson_interval(np.array([9]), 10)[0][0]
    assert one[1] == pytest.approx(hi_of(9, 10), abs=1e-12)
    for bad in (-1, 11, np.array([3, 12])):
        with pytest.raises(ConfigError, match="0 <= successes <= trials=10"):
            wilson_interval(bad, 10)
    with pytest.raises(ConfigError, match="positive int"):
        wilson_interval(0, 0)


def hi_of(k: int, n: int, z: float = 1.959963984540054) -> float:
    """The Wilson upper bound written out by hand."""
    p, z2n = k / n, z * z / n
    return ((p + z2n / 2) + z * math.sqrt(p * (1 - p) / n + z2n / (4 * n))) / (1 + z2n)


def test_one_wilson_interval_serves_calibration_and_probes():
    import dtlens.analysis
    from dtlens.analysis.probes import fit
    from dtlens.training import calibration

    assert dtlens.analysis.wilson_interval is calibration.wilson_interval
    assert fit.wilson_interval is calibration.wilson_interval


def test_success_by_layout_groups_episodes_by_the_layout_they_played():
    names = [s.name for s in SCENARIOS]  # key/top-key, key/top-ball, ball/top-key, ball/top-ball
    # layouts drawn from seeds: not in turn, and ball/top-ball never played
    played = (names[1], names[0], names[1], names[2], names[0], names[1])
    result = CalibrationResult(
        rtgs=np.array([0.0, 0.9]),
        rewards=np.zeros((2, 6)),
        success=np.array([[1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 1]], dtype=bool),
        lengths=np.full((2, 6), 6),
        layouts=played,
    )
    # at RTG 0.9: key/top-key plays episodes 1, 4 (1 of 2); key/top-ball 0, 2, 5 (2 of 3);
    # ball/top-key episode 3 (0 of 1)
    by_layout = result.success_by_layout(0.9)
    assert list(by_layout) == names
    assert by_layout[names[0]] == 0.5 and by_layout[names[1]] == pytest.approx(2 / 3)
    assert by_layout[names[2]] == 0.0 and math.isnan(by_layout[names[3]])
    at_0 = result.success_by_layout(0.0)
    assert [at_0[n] for n in names[:3]] == [1.0, 1.0, 1.0] and math.isnan(at_0[names[3]])
    with pytest.raises(ConfigError, match=r"RTG 0\.5 was not evaluated"):
        result.success_by_layout(0.5)
    unnamed = CalibrationResult(
        rtgs=result.rtgs, rewards=result.rewards, success=result.success, lengths=result.lengths
    )
    with pytest.raises(ConfigError, match="layout of each of the 6 episodes"):
        unnamed.success_by_layout(0.9)


def test_calibration_result_json_roundtrip_and_table():
    result = CalibrationResult(
        rtgs=np.array([0.0, 0.9]),
        rewards=np.array([[0.0, 0.0, 0.5], [0.9, 0.8, 0.0]]),
        success=np.array([[False, False, True], [True, True, False]]),
        lengths=np.array([[50, 50, 30], [6, 8, 6]]),
        layouts=("a", "b", "c"),
        settings={"temperature": 0.0},
    )
    again = CalibrationResult.from_json(result.to_json())
    assert again.rewards.tolist() == result.rewards.tolist()
    assert again.success.tolist() == result.success.tolist()
    assert again.settings == {"temperature": 0.0}
    assert result.success_rate.tolist() == pytest.approx([1 / 3, 2 / 3])
    assert result.at(0.9) == 1
    rows = result.table().splitlines()
    assert rows[2].startswith("| 0.00 | 0.333 |") and rows[3].startswith("| 0.90 | 0.667 |")
    with pytest.raises(ConfigError, match="not evaluated"):
        result.at(0.5)
    with pytest.raises(ConfigError, match="one shape"):
        CalibrationResult(np.zeros(2), np.zeros((2, 3)), np.zeros((2, 2), bool), np.zeros((2, 3)))


def test_rollout_evaluator_reports_each_rtg():
    model = scripted_model([2, 2, 2, 2, 1, 2])  # right = bottom target
    metrics = make_rollout_evaluator(rtgs=(0.0, 0.9), episodes_per_rtg=4, max_steps=MAX_STEPS)(
        model
    )
    win = 1 - 0.9 * 6 / MAX_STEPS
    assert metrics == pytest.approx(
        {"success@0": 0.5, "reward@0": win / 2, "success@0.9": 0.5, "reward@0.9": win / 2}
    )


def test_argument_errors(model):
    with pytest.raises(ConfigError, match="n_episodes"):
        rollout(model, initial_rtg=0.9)
    with pytest.raises(ConfigError, match="disagree"):
        rollout(model, initial_rtg=[0.1, 0.2], seeds=[1, 2, 3])
    with pytest.raises(ConfigError, match="max_timestep"):
        rollout(model, n_episodes=1, max_steps=MAX_STEPS + 2)
    with pytest.raises(ConfigError, match="temperature"):
        rollout(model, n_episodes=1, temperature=-1.0, max_steps=MAX_STEPS)
    with pytest.raises(EnvError, match="unknown layout"):
        resolve_layouts(["key/top-box"], 1, MEMORY_ENV_ID)
    with pytest.raises(EnvError, match="only be forced"):
        resolve_layouts("balanced", 2, "MiniGrid-DoorKey-5x5-v0")


def test_calibrate_cli_checks_its_outputs_first_and_never_replaces_silently(tmp_path, capsys):
    from dtlens.cli import main

    model_dir = tmp_path / "model"
    dtlens.save(build_model(max_timestep=MAX_STEPS), model_dir)
    out, html = tmp_path / "calibration.json", tmp_path / "calibration.html"
    run = ["calibrate", "--rtgs", "0", "--episodes-per-rtg", "4", "--max-steps", str(MAX_STEPS)]
    (tmp_path / "file.txt").write_text("x")
    # checked before the model is loaded: the model path does not exist either
    bad = ["--model", str(tmp_path / "absent"), "--out", str(tmp_path / "file.txt" / "c.json")]
    assert main([*run, *bad]) == 2
    assert "--out" in capsys.readouterr().err
    assert main([*run, "--model", str(model_dir), "--out", str(out), "--html", str(html)]) == 0
    written = out.read_text(), html.read_text()
    assert CalibrationResult.from_json(written[0]).n_episodes == 4
    assert main([*run, "--model", str(model_dir), "--out", str(out), "--seed", "1"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out.read_text(), html.read_text()) == written
    assert main([*run, "--model", str(model_dir), "--html", str(html), "--seed", "1"]) == 2
    again = [*run, "--model", str(model_dir), "--out", str(out), "--seed", "1", "--overwrite"]
    assert main(again) == 0
    assert out.read_text() != written[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "calibration.html", "calibration.json", "file.txt", "model"
    ]  # fmt: skip
