"""Action maps ("every square"), their plot, greedy-play GIFs and the report section.

Expectations are independent of the code under test: the placeable squares listed by
hand from the Memory layout, shortest routes found by brute force over action
sequences in the env, windows built by hand with the env and run through a plain
forward, GIF frames compared with a separately stepped env's ``render()``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import dtlens
from dtlens.analysis.edits.routine import play_greedy
from dtlens.analysis.maps import ActionMaps, action_maps, layout_cells, placement_batch
from dtlens.analysis.rollout_gif import encode_gif, greedy_gif, greedy_gifs, render_episode
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, Scenario, encode_observation, make_env
from dtlens.env.poses import (
    decisive_poses,
    optimal_first_actions,
    placement_routes,
    pose_distances,
)
from dtlens.errors import DTLensError, EnvError
from dtlens.model import TrajectoryBatch
from dtlens.report import ReportConfig
from dtlens.report.html import render_html
from dtlens.report.section import Section, SectionImage, write_section
from dtlens.report.sections import SECTION_MODULES
from dtlens.report.sections import maps as maps_section
from tests.conftest import ORIGINAL_DT, build_model, requires_shared

LEFT, RIGHT, FORWARD = 0, 1, 2
#: the open squares of the Memory grid that do not end the episode (see the env's map)
SQUARES = {(2, 2), (3, 2), (1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (1, 4), (2, 4), (3, 4)}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return build_model(n_ctx=26)  # 9 steps, like MemoryDT


@pytest.fixture(scope="module")
def maps(model) -> ActionMaps:
    return action_maps(model, rtg=0.9)


def replay(layout: str, actions, render: bool = False):
    """Raw observations (and renders) of the episode start -> ``actions``, stepped by hand."""
    env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False,
                   render_mode="rgb_array" if render else None)  # fmt: skip
    scenario = {s.name: s for s in SCENARIOS}[layout]
    obs, _ = env.reset(seed=0, options=scenario.options)
    images, frames = [obs["image"]], [env.render()] if render else []
    for action in actions:
        obs, *_ = env.step(action)
        images.append(obs["image"])
        if render:
            frames.append(env.render())
    pose = (*(int(v) for v in env.unwrapped.agent_pos), int(env.unwrapped.agent_dir))
    env.close()
    return np.stack(images), pose, frames


# ------------------------------------------------------------------------- placing
def test_placeable_poses_are_the_open_squares_in_every_facing():
    for scenario in SCENARIOS:
        routes = placement_routes(scenario)
        assert set(routes) == {(x, y, d) for x, y in SQUARES for d in range(4)}
        assert len(routes) == 40
        assert routes[(1, 3, 0)] == ()  # the start pose


def test_routes_are_shortest_by_brute_force_and_reach_their_pose():
    # every left/right/forward sequence up to 6 actions, played in the env: the first
    # length at which a pose is reached (without ending the episode) is its distance
    first_reached: dict[tuple, int] = {(1, 3, 0): 0}
    for length in range(1, 7):
        for seq in itertools.product((LEFT, RIGHT, FORWARD), repeat=length):
            env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
            env.reset(seed=0, options={"instruction": "key", "top": "ball"})
            ended = False
            for action in seq:
                _, _, terminated, truncated, _ = env.step(action)
                ended = ended or terminated or truncated
            if not ended:
                pose = (*(int(v) for v in env.unwrapped.agent_pos), int(env.unwrapped.agent_dir))
                first_reached.setdefault(pose, length)
    routes = placement_routes("key/top-ball")
    assert {p: len(r) for p, r in routes.items()} == first_reached
    for pose in [(3, 2, 3), (5, 3, 2), (1, 4, 3)]:
        assert replay("key/top-ball", routes[pose])[1] == pose
    assert routes[(3, 2, 3)] == (FORWARD, FORWARD, LEFT, FORWARD)


def test_distances_and_first_actions_by_hand():
    assert pose_distances("key/top-key")[(1, 3, 0)] == 6  # 4 forward, turn, forward
    assert pose_distances("key/top-key", "other")[(1, 3, 0)] == 6
    assert optimal_first_actions("key/top-key", (5, 3, 0)) == {LEFT}  # key is up
    assert optimal_first_actions("key/top-ball", (5, 3, 0)) == {RIGHT}
    assert optimal_first_actions("key/top-ball", (5, 3, 0), "other") == {LEFT}
    assert optimal_first_actions("ball/top-ball", (1, 3, 2)) == {LEFT, RIGHT}  # facing back
    assert optimal_first_actions("ball/top-ball", (4, 3, 0)) == {FORWARD}
    # only at the end of the corridor do the routes to the two targets part
    assert decisive_poses("ball/top-key") == tuple((5, 3, d) for d in range(4))
    with pytest.raises(EnvError, match="unknown layout"):
        placement_routes("key/top-box")


def test_probabilities_equal_a_plain_forward_on_hand_built_windows(model, maps):
    for layout, actions in [("key/top-ball", [FORWARD, FORWARD, LEFT, FORWARD]),
                            ("ball/top-key", [])]:  # fmt: skip
        images, pose, _ = replay(layout, actions)
        n = len(images)
        window = TrajectoryBatch(  # unpadded: a dtlens model ignores masked padding
            obs=encode_observation(torch.as_tensor(images))[None],
            actions=torch.tensor(actions, dtype=torch.long).reshape(1, n - 1),
            rtg=torch.full((1, n), 0.9),
            timesteps=torch.arange(n)[None],
        )
        with torch.no_grad():
            expected = model.action_logits(window)[0, -1].softmax(-1)
        got = torch.tensor([maps.prob(layout, pose, a) for a in range(7)])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("padding", ["tokens", "mask"])
def test_short_context_padding_follows_the_model(padding):
    model = build_model(n_ctx=11)  # 4 steps
    model.metadata["context_padding"] = padding
    # "mask": some windows are full (no mask) and some padded (masked); both mixed in one batch
    maps = action_maps(model, rtg=0.5)
    # a route of 4 actions (5 steps): the window keeps the last 4 steps
    images, pose, _ = replay("key/top-key", [FORWARD, FORWARD, LEFT, FORWARD])
    long = TrajectoryBatch(
        obs=encode_observation(torch.as_tensor(images[1:]))[None],
        actions=torch.tensor([[FORWARD, LEFT, FORWARD]]),
        rtg=torch.full((1, 4), 0.5),
        timesteps=torch.tensor([[1, 2, 3, 4]]),
    )
    # a route of 1 action (2 steps): left-padded the original way, run as tokens or masked
    images2, pose2, _ = replay("key/top-key", [RIGHT])
    obs = encode_observation(torch.as_tensor(images2))
    short = TrajectoryBatch(
        obs=torch.cat([torch.zeros(2, 7, 7, 20), obs])[None],
        actions=torch.tensor([[7, 7, RIGHT]]),
        rtg=torch.full((1, 4), 0.5),
        timesteps=torch.tensor([[0, 0, 0, 1]]),
        padding_mask=torch.tensor([[False, False, True, True]]) if padding == "mask" else None,
    )
    with torch.no_grad():
        for window, where in [(long, pose), (short, pose2)]:
            expected = model.action_logits(window)[0, -1].softmax(-1)
            got = torch.tensor([maps.prob("key/top-key", where, a) for a in range(7)])
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert maps.padding == padding and maps.n_steps == 4


def test_maps_are_distributions_at_placed_poses_and_nan_elsewhere(maps):
    assert maps.probs.shape == (2, 2, 7, 7, 4, 7)
    assert maps.axes == ("instruction", "top", "x", "y", "direction", "action")
    assert maps.labels["instruction"] == ("key", "ball")
    assert maps.labels["direction"] == ("east", "south", "west", "north")
    placed = torch.zeros(7, 7, 4, dtype=torch.bool)
    for x, y in SQUARES:
        placed[x, y] = True
    finite = torch.isfinite(maps.probs).all(-1)
    assert torch.equal(finite, placed.expand(2, 2, 7, 7, 4))
    assert torch.isnan(maps.probs[~finite]).all()
    sums = maps.probs[finite].sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)
    assert len(maps.to_records()) == 4 * 40
    with pytest.raises(DTLensError, match="not placed"):
        maps.prob("key/top-key", (5, 2, 0), "left")  # the square that ends the episode


def test_entropy_is_the_hand_formula_at_placed_poses_and_nan_elsewhere(maps):
    entropy = maps.entropy()
    assert entropy.shape == (2, 2, 7, 7, 4)
    for layout, (i, t) in {"key/top-ball": (0, 1), "ball/top-key": (1, 0)}.items():
        for pose in maps.poses:
            p = [maps.prob(layout, pose, a) for a in range(7)]
            expected = -sum(v * math.log(v) for v in p if v > 0)
            assert float(entropy[(i, t, *pose)]) == pytest.approx(expected, abs=1e-5)
    assert torch.isnan(entropy[0, 0, 0, 0]).all()  # a wall: not placed
    # certain everywhere -> 0 (not -0.0); uniform everywhere -> log 7
    certain = torch.zeros_like(maps.probs)
    certain[..., 2] = 1.0
    zero = dataclasses.replace(maps, probs=certain).entropy()
    assert torch.equal(zero, torch.zeros_like(zero)) and not torch.signbit(zero).any()
    uniform = dataclasses.replace(maps, probs=torch.full_like(maps.probs, 1 / 7)).entropy()
    torch.testing.assert_close(uniform, torch.full_like(uniform, math.log(7)))


def test_cells_name_walls_objects_and_ends():
    cells = layout_cells("ball/top-key")
    assert cells[1, 2] == "ball" and cells[5, 1] == "key" and cells[5, 5] == "ball"
    assert cells[5, 4] == "match" and cells[5, 2] == "other"  # the ball is down
    assert {cells[x, y] for x, y in SQUARES} == {"empty"}
    assert (cells == "wall").sum() == 49 - len(SQUARES) - 3 - 2


def test_agreement_with_an_oracle_policy_is_one(maps):
    # a synthetic map whose most likely action is always a shortest-route action
    probs = torch.full_like(maps.probs, float("nan"))
    for scenario in SCENARIOS:
        i, t = ("key", "ball").index(scenario.instruction), ("key", "ball").index(scenario.top)
        for pose in maps.poses:
            best = min(optimal_first_actions(scenario, pose))
            probs[(i, t, *pose)] = torch.nn.functional.one_hot(torch.tensor(best), 7).float()
    oracle = dataclasses.replace(maps, probs=probs)
    for scenario in SCENARIOS:
        assert oracle.agreement(scenario) == 1.0
        assert oracle.agreement(scenario, "other", decisive_poses(scenario)) == 0.0


def test_plot_has_one_wedge_per_pose_and_action_with_the_maps_values(maps):
    fig = maps.plot(actions=("left", "forward"))
    wedges = [t for t in fig.data if t.meta == "wedges"]
    assert len(wedges) == 4 * 2  # rows: layouts, columns: actions
    symbols = ("triangle-right", "triangle-down", "triangle-left", "triangle-up")
    for k, trace in enumerate(wedges):
        scenario, action = SCENARIOS[k // 2], ("left", "forward")[k % 2]
        assert len(trace.x) == 40
        for (x, y, d), colour, symbol in zip(
            trace.customdata, trace.marker.color, trace.marker.symbol, strict=True
        ):
            assert colour == pytest.approx(maps.prob(scenario, (x, y, d), action), abs=1e-6)
            assert symbol == symbols[d]
    objects = next(t for t in fig.data if t.meta == "objects")  # key/top-key
    assert sorted(zip(objects.x, objects.y, objects.text, strict=True)) == [
        (1, 2, "key"), (5, 1, "key"), (5, 5, "ball")
    ]  # fmt: skip
    assert f"{SCENARIOS[0].name}: P(left)" == fig.layout.annotations[0].text


# ----------------------------------------------------------------------------- GIFs
def test_gif_frames_are_the_envs_renders_one_per_step_plus_one(model):
    gif = greedy_gif(model, "key/top-ball", rtg=0.9, max_steps=12)
    run = play_greedy(model, Scenario("key", "ball"), rtg=0.9, max_steps=12)
    assert gif.run.actions == run.actions  # the same episode as play_greedy's
    _, _, frames = replay("key/top-ball", run.actions, render=True)
    assert len(gif.frames) == len(run.actions) + 1 == len(frames)
    assert np.array_equal(gif.frames, np.stack(frames))
    decoded = iio.imread(gif.to_bytes(), index=None, extension=".gif")
    assert decoded.shape[0] == len(run.actions) + 1
    height = frames[0].shape[0]
    assert np.array_equal(decoded[0, :height, :, :3], frames[0])  # first frame: after reset
    assert gif.filename == "key-top-ball_rtg0.9.gif"


def test_batched_gifs_match_one_at_a_time(model):
    gifs = greedy_gifs(model, ["ball/top-ball", "key/top-key"], rtgs=(0.9, 0.0), max_steps=6)
    assert [(g.run.scenario.name, g.run.rtg) for g in gifs] == [
        ("ball/top-ball", 0.9), ("key/top-key", 0.9), ("ball/top-ball", 0.0), ("key/top-key", 0.0)
    ]  # fmt: skip
    for gif in gifs:
        single = play_greedy(model, gif.run.scenario, rtg=gif.run.rtg, max_steps=6)
        assert gif.run.actions == single.actions
        torch.testing.assert_close(gif.run.probs, single.probs, atol=1e-5, rtol=0)


def test_gif_write_is_atomic(model, tmp_path, monkeypatch):
    gif = greedy_gif(model, "ball/top-key", rtg=0.9, max_steps=6)
    path = gif.write(tmp_path)
    assert path == tmp_path / "ball-top-key_rtg0.9.gif"
    before = path.read_bytes()
    assert before == gif.to_bytes() and before[:6] == b"GIF89a"

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dtlens.files.os.fsync", failing_fsync)
    other = greedy_gif(model, "ball/top-key", rtg=0.0, max_steps=6)
    with pytest.raises(OSError, match="No space left"):
        other.write(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_replay_refuses_an_episode_it_does_not_reproduce():
    images, _, _ = replay("key/top-key", [FORWARD])
    with pytest.raises(EnvError, match="did not reproduce"):
        render_episode("key/top-key", [LEFT], expected_images=images)
    with pytest.raises(EnvError, match="captions for"):
        encode_gif(np.zeros((2, 4, 4, 3), dtype=np.uint8), ["one"])


# ------------------------------------------------------------------ report section
def test_section_images_are_embedded_and_written(tmp_path):
    image = SectionImage(b"GIF89a-not-really", "image/gif", "a <run>", "run.gif")
    section = Section("demo", "Demo", numbers={"x": 1}, images=[image])
    page = render_html([section], title="t")
    assert f"<img src='{image.data_uri()}' alt='a &lt;run&gt;'>" in page
    assert "<figcaption>a &lt;run&gt;</figcaption>" in page
    written = write_section(section, tmp_path)
    assert (tmp_path / "demo_run.gif").read_bytes() == image.data
    assert tmp_path / "demo_run.gif" in written
    assert "images" not in section.to_json()  # numbers only
    for bad in [dict(filename="../up.gif"), dict(mime="text/html"), dict(data="text")]:
        with pytest.raises(DTLensError):
            SectionImage(**{"data": b"x", "mime": "image/gif", **bad})


def test_section_numbers_recomputed_from_the_public_api(model, tmp_path):
    assert SECTION_MODULES["maps"] is maps_section
    config = ReportConfig(max_steps=6)
    section = maps_section.run(model, config)
    numbers = json.loads(json.dumps(section.to_json()))["numbers"]
    by_rtg = {rtg: action_maps(model, rtg) for rtg in (0.9, 0.0)}
    assert numbers["maps"] == [
        {"rtg": rtg, **r} for rtg, m in by_rtg.items() for r in m.to_records()
    ]
    assert numbers["placement"] == {
        "layouts": 4, "poses_per_layout": 40, "squares": 10, "window": 9, "padding": "mask",
        "longest_route": 6,
    }  # fmt: skip
    for row in numbers["summary"]:
        m, layout = by_rtg[row["rtg"]], row["layout"]
        table = torch.stack([m.layout_probs(layout)[p] for p in m.poses]).double()
        entropy = -(table * table.log()).sum(-1).mean()
        assert row["mean_entropy"] == pytest.approx(float(entropy), abs=1e-4)
        assert row["non_movement"] == pytest.approx(float(table[:, 3:].sum(-1).mean()), abs=1e-4)
        assert row["decision_left"] == pytest.approx(m.prob(layout, (5, 3, 0), 0), abs=1e-4)
        turn = {"key/top-key": 0, "ball/top-ball": 0}.get(layout, 1)  # left = up
        assert row["turn_to_match"] == pytest.approx(m.prob(layout, (5, 3, 0), turn), abs=1e-4)
        wrong = (5, 3, 1 if turn == 0 else 3)  # turned towards the other target
        assert row["turned_wrong_forward"] == pytest.approx(m.prob(layout, wrong, 2), abs=1e-4)
        assert row["agree_match"] == pytest.approx(m.agreement(layout), abs=1e-4)
    assert len(numbers["gifs"]) == len(section.images) == 8
    for row, image in zip(numbers["gifs"], section.images, strict=True):
        run = play_greedy(model, Scenario(*row["layout"].replace("top-", "").split("/")),
                          rtg=row["rtg"], max_steps=6)  # fmt: skip
        assert row["actions"] == run.action_names and row["steps"] == len(run.actions)
        frames = iio.imread(image.data, index=None, extension=".gif")
        assert frames.shape[0] == row["frames"] == len(run.actions) + 1
    assert len(section.figures) == 2
    page = render_html([section], title="t")
    assert page.count("data:image/gif;base64,") == 8
    names = {p.name for p in write_section(section, tmp_path)}
    assert {row["file"] for row in numbers["gifs"]} <= names


@requires_shared(ORIGINAL_DT)
def test_original_checkpoint_maps_use_padding_as_tokens():
    original = dtlens.load(ORIGINAL_DT)
    maps = action_maps(original, rtg=0.9)
    assert maps.padding == "tokens"
    # the decision square: start + 4 forward = 5 steps, left-padded to 9 as the original
    # project evaluated (zero views, pad action 7, the RTG, timestep 0), no mask
    images, pose, _ = replay("key/top-ball", [FORWARD] * 4)
    assert pose == (5, 3, 0)
    window = TrajectoryBatch(
        obs=torch.cat([torch.zeros(4, 7, 7, 20), encode_observation(torch.as_tensor(images))])[
            None
        ],
        actions=torch.tensor([[7, 7, 7, 7, FORWARD, FORWARD, FORWARD, FORWARD]]),
        rtg=torch.full((1, 9), 0.9),
        timesteps=torch.tensor([[0, 0, 0, 0, 0, 1, 2, 3, 4]]),
    )
    batch, _ = placement_batch(original, "key/top-ball", 0.9, poses=[pose])
    assert batch.padding_mask is None
    with torch.no_grad():
        expected = original.action_logits(window)[0, -1].softmax(-1)
    got = torch.tensor([maps.prob("key/top-ball", (5, 3, 0), a) for a in range(7)])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert maps.prob("key/top-ball", (5, 3, 0), "right") > 0.9  # turns to the key, below
