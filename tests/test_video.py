"""Videos of evaluation episodes (rl_runner/video.py): MuJoCo cameras that follow the agent, frames converted and
capped for TensorBoard clips, ``eval.video=true`` in a training run and ``rl-eval video=true`` on Atari."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import yaml
from omegaconf import DictConfig
from PIL import Image

from rl_runner.config import compose_config
from rl_runner.envs.make import make_env
from rl_runner.evaluate import evaluate_run
from rl_runner.logging import read_scalars
from rl_runner.runners import env_loop
from rl_runner.training import train
from rl_runner.video import ClipFrames, video_frame, write_video
from tests.conftest import BREAKOUT, TINY


# ------------------------------------------------------------------------------------- MuJoCo cameras
def cheetah_pixels(frame: np.ndarray) -> np.ndarray:
    """Where the cheetah (and its reflection) is: its tan and brown have much more red than blue, while the
    floor is green-white and black and the sky grey."""
    rgb = frame.astype(int)
    return (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > rgb[..., 1])


def frames_before_and_after_running(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """A frame at reset and one with the cheetah put 20 m further along x (a few seconds of good running)."""
    env.reset(seed=0)
    before = env.render()
    base = env.unwrapped
    qpos = base.data.qpos.copy()
    qpos[0] += 20.0
    base.set_state(qpos, base.data.qvel.copy())
    return before, env.render()


def assert_cheetah_in_the_middle(before: np.ndarray, after: np.ndarray) -> None:
    start, moved = cheetah_pixels(before), cheetah_pixels(after)
    assert start.sum() > 1000, "the cheetah is not in the first frame"
    assert moved.sum() > 0.5 * start.sum(), "the camera lost the cheetah"
    rows, columns = np.nonzero(moved)
    height, width = moved.shape
    assert width / 4 < columns.mean() < 3 * width / 4 and height / 4 < rows.mean() < 3 * height / 4


def test_mujoco_frames_come_from_the_models_track_camera(tiny_config: Callable[..., DictConfig]) -> None:
    env = make_env(tiny_config("env=halfcheetah").env, render_mode="rgb_array")
    try:
        base = env.unwrapped
        track = mujoco.mj_name2id(base.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
        assert track != -1 and base.mujoco_renderer.camera_id == track
        assert_cheetah_in_the_middle(*frames_before_and_after_running(env))
    finally:
        env.close()


def test_a_model_without_a_track_camera_gets_a_free_camera_that_tracks_its_root_body(
    tiny_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    original = Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / "half_cheetah.xml"
    xml = tmp_path / "half_cheetah_without_cameras.xml"
    xml.write_text(re.sub(r"<camera [^>]*/>", "", original.read_text()))
    env = make_env(tiny_config("env=halfcheetah", f"+env.kwargs.xml_file={xml}").env, render_mode="rgb_array")
    try:
        renderer, model = env.unwrapped.mujoco_renderer, env.unwrapped.model
        assert model.ncam == 0
        assert renderer.default_cam_config["type"] == mujoco.mjtCamera.mjCAMERA_TRACKING
        assert renderer.default_cam_config["trackbodyid"] == mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        assert_cheetah_in_the_middle(*frames_before_and_after_running(env))
    finally:
        env.close()


def test_a_camera_chosen_in_the_env_kwargs_is_kept(tiny_config: Callable[..., DictConfig]) -> None:
    """camera_id=-1 is gymnasium's still free camera: it loses the cheetah, which is what the tracking is for."""
    env = make_env(tiny_config("env=halfcheetah", "+env.kwargs.camera_id=-1").env, render_mode="rgb_array")
    try:
        assert env.unwrapped.mujoco_renderer.camera_id == -1
        before, after = frames_before_and_after_running(env)
        assert cheetah_pixels(before).sum() > 1000 and not cheetah_pixels(after).any()
    finally:
        env.close()


# ------------------------------------------------------------------------------------- frames and clips
def test_video_frames_are_bytes_with_tiny_grids_enlarged_and_large_frames_shrunk() -> None:
    grid = np.zeros((10, 10, 3), dtype=np.float32)
    grid[0, 0] = [1.0, 0.5, 0.0]
    enlarged = video_frame(grid)
    assert enlarged.shape == (160, 160, 3) and enlarged.dtype == np.uint8
    assert (enlarged[:16, :16] == [255, 128, 0]).all() and not enlarged[16:, 16:].any()
    assert video_frame(np.zeros((500, 600, 3), np.uint8), max_size=480).shape == (250, 300, 3)
    for shape in ((480, 480, 3), (210, 160, 3)):  # MuJoCo's and Atari's frames as they are
        assert video_frame(np.zeros(shape, np.uint8), max_size=480).shape == shape


def test_a_clip_keeps_the_first_frames_up_to_its_cap() -> None:
    clip = ClipFrames(max_frames=3, max_side=480)
    for value in range(5):
        clip.append(np.full((210, 160, 3), value, np.uint8))
    video = clip.video(fps=15)
    assert video.fps == 15 and video.frames.shape == (3, 210, 160, 3) and video.frames.dtype == np.uint8
    assert video.frames[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert not clip and ClipFrames().video(fps=30) is None


def test_an_mp4_of_odd_sized_frames_is_padded_to_even_sizes(tmp_path: Path) -> None:
    import imageio.v3 as imageio

    frames = [np.full((171, 161, 3), 40 * i, np.uint8) for i in range(4)]
    written = imageio.imread(write_video(frames, tmp_path / "odd.mp4", fps=10))
    assert written.shape == (4, 172, 162, 3)


# ------------------------------------------------------------------------------------- eval.video=true
def test_eval_video_logs_a_gif_clip_of_the_first_episode_and_leaves_the_returns_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    render_modes: list[Any] = []
    original_make_env = env_loop.make_env

    def make_env_noting_render_mode(env_cfg: DictConfig, render_mode: str | None = None) -> gym.Env:
        render_modes.append(render_mode)
        return original_make_env(env_cfg, render_mode)

    monkeypatch.setattr(env_loop, "make_env", make_env_noting_render_mode)
    base = [*TINY, "env=pendulum", "env.max_episode_steps=40", "eval.episodes=2"]
    runs = {}
    for video in (True, False):
        render_modes.clear()
        train(compose_config([*base, f"eval.video={video}"]), run_dir=tmp_path / str(video))
        accumulator = EventAccumulator(str(tmp_path / str(video) / "tb"), size_guidance={"images": 0})
        accumulator.Reload()
        runs[video] = (read_scalars(tmp_path / str(video) / "tb"), accumulator, list(render_modes))

    scalars, accumulator, modes = runs[True]
    assert modes == ["rgb_array"]
    clips = accumulator.Images("videos/eval")
    assert [clip.step for clip in clips] == [step for step, _ in scalars["eval/return_mean"]] == [150, 300]
    for clip in clips:
        assert clip.encoded_image_string.startswith(b"GIF89a")
        gif = Image.open(io.BytesIO(clip.encoded_image_string))
        # one episode of 40 steps (Pillow merges repeated frames, so maybe fewer); pygame's 500x500 divided by 3
        assert 1 < gif.n_frames <= 40 and gif.size == (167, 167)

    plain_scalars, plain_accumulator, plain_modes = runs[False]
    assert plain_modes == [None] and not plain_accumulator.Tags()["images"]
    for tag in ("eval/return_mean", "eval/return_std"):
        assert scalars[tag] == plain_scalars[tag]


# ------------------------------------------------------------------------------------- rl-eval on Atari
def test_rl_eval_video_of_breakout_is_a_full_colour_mp4(tmp_path: Path) -> None:
    import imageio.v3 as imageio

    overrides = [*TINY, *BREAKOUT, "total_steps=60", "agent.learning_starts=20", "eval.episodes=0"]
    train(compose_config(overrides), run_dir=tmp_path)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))  # as rl-train leaves it

    result = evaluate_run(tmp_path, {"episodes": "1", "video": "true"})
    video = imageio.imread(result["video"])
    assert video.shape[0] > 10 and video.shape[1:] == (210, 160, 3)
    assert (np.ptp(video.astype(int), axis=-1) > 60).mean() > 0.05, "no colourful bricks: not the game's screen"
    assert np.abs(video[0].astype(int) - video[-1].astype(int)).max() > 100, "nothing moved"
