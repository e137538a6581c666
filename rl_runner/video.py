"""Frames of evaluation episodes as videos: mp4 files for ``rl-eval video=true`` and TensorBoard clips for
``eval.video=true`` (see ``RunLogger.videos``), from the same frame conversion."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np

from rl_runner.logging import Video

# A TensorBoard clip is held in memory as raw frames and then encoded as a GIF inside the event file, so both
# grow with its length and frame size. 500 frames are half a MuJoCo locomotion episode (25 s at their 20 fps) or
# about 30 s of Atari play (frame skip 4): enough to see how the agent behaves. Frames are shrunk by whole
# factors to at most 240 px (MuJoCo's 480x480 becomes 240x240, so pixel art stays sharp): HalfCheetah's moving
# floor compresses poorly (a 500-frame 240x240 clip measured 5.4 MB; a whole episode at full size ~25 MB). Later
# frames of a longer episode are not rendered at all (``evaluate_policy``'s ``max_frames``): at 39 ms a frame,
# rendering is what a clip costs.
MAX_CLIP_FRAMES = 500
MAX_CLIP_SIDE = 240
DEFAULT_FPS = 30


def allow_headless_rendering() -> None:
    """Rendering without a display, unless the user chose otherwise: MuJoCo through EGL (it reads MUJOCO_GL
    when it loads, so call this before the first env is made) and pygame (classic control) to a dummy driver."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def video_frame(frame: np.ndarray, min_size: int = 160, max_size: int | None = None) -> np.ndarray:
    """An env's rendered frame as the uint8 RGB a video holds: colours in [0, 1] (MinAtar's) scaled to bytes, a
    tiny grid (MinAtar's 10x10) enlarged by whole pixels so that each cell stays a sharp square, and with
    ``max_size`` a frame whose longer side exceeds it reduced by the smallest whole factor that fits."""
    frame = np.asarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        frame = np.round(np.clip(frame, 0.0, 1.0) * 255)
    frame = frame.astype(np.uint8)
    scale = max(1, -(-min_size // min(frame.shape[:2])))
    if scale > 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    if max_size is not None and max(frame.shape[:2]) > max_size:
        from PIL import Image

        factor = -(-max(frame.shape[:2]) // max_size)
        frame = np.asarray(Image.fromarray(frame).reduce(factor))
    return frame


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """``frames`` (as rendered) as an H.264 mp4 that common players open."""
    import imageio.v2 as imageio  # TensorBoard's add_video needs moviepy 1; write the mp4 directly

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(_even_sized(video_frame(frame)))
    return path


def _even_sized(frame: np.ndarray) -> np.ndarray:
    # H.264 in yuv420p (the pixel format players support) stores colour per 2x2 block: ffmpeg rejects odd sizes
    pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
    return np.pad(frame, pad, mode="edge") if any(p[1] for p in pad[:2]) else frame


def video_fps(env: gym.Env) -> int:
    return int(env.metadata.get("render_fps") or DEFAULT_FPS)


class ClipFrames(list):
    """``evaluate_policy``'s ``frames`` list for a TensorBoard clip: each frame is converted as it arrives
    (``video_frame``, shrunk to ``max_side``) and frames past ``max_frames`` are dropped, so a long episode
    costs no memory beyond the cap."""

    def __init__(self, max_frames: int = MAX_CLIP_FRAMES, max_side: int = MAX_CLIP_SIDE) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.max_side = max_side

    def append(self, frame: np.ndarray) -> None:
        if len(self) < self.max_frames:
            super().append(video_frame(frame, max_size=self.max_side))

    def video(self, fps: int) -> Video | None:
        """The frames as one clip, emptying this list; None without frames (an env that renders nothing)."""
        if not self:
            return None
        clip = np.empty((len(self), *self[0].shape), dtype=np.uint8)
        for index in range(len(self)):  # frame by frame, so the list and the clip never both hold every frame
            clip[index] = self[index]
            self[index] = None
        self.clear()
        return Video(clip, fps)
