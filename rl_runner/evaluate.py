"""``rl-eval <run dir> [episodes=10] [checkpoint=step_...] [video=true] [device=cpu] [seed=N]``

Loads a run's config (re-composed from its saved overrides, so every schema check applies) and a
checkpoint (the latest unless named), plays deterministic-policy episodes and prints mean and std return.
``video=true`` writes the first episode to ``<run dir>/videos/`` as mp4 (MuJoCo renders headless via EGL).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

PROGRAM = "rl-eval"
OPTIONS = {
    "episodes": int,
    "checkpoint": str,
    "video": lambda v: v.lower() in ("1", "true", "yes"),
    "device": str,
    "seed": int,
}
USAGE = f"usage: {PROGRAM} RUN_DIR [episodes=N] [checkpoint=step_...] [video=true] [device=auto|cpu|cuda] [seed=N]"


def parse_arguments(argv: list[str]) -> tuple[Path, dict]:
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(USAGE)
    options: dict = {"episodes": 10, "checkpoint": None, "video": False, "device": "auto", "seed": None}
    for argument in argv[1:]:
        key, sep, value = argument.partition("=")
        if not sep or key not in OPTIONS:
            raise ValueError(f"unknown argument {argument!r}; {USAGE}")
        try:
            options[key] = OPTIONS[key](value)
        except ValueError as error:
            raise ValueError(f"{key}={value!r}: {error}") from error
    return Path(argv[0]), options


def evaluate_run(
    run_dir: Path,
    episodes: int = 10,
    checkpoint: str | None = None,
    video: bool = False,
    device: str = "auto",
    seed: int | None = None,
) -> dict:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before MuJoCo loads
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # classic-control envs draw with pygame
    from hydra import compose, initialize_config_dir

    from rl_runner.checkpoint import latest_checkpoint, load_into
    from rl_runner.envs import make_env
    from rl_runner.runners.off_policy import EVAL_SEED_OFFSET, build_agent, evaluate_policy
    from rl_runner.runtime import resolve_device
    from rl_runner.train import CONF_DIR, saved_overrides

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=saved_overrides(run_dir))
    path = run_dir / "checkpoints" / checkpoint if checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if path is None or not path.is_dir():
        raise ValueError(f"no checkpoint {checkpoint or ''} under {run_dir / 'checkpoints'}")

    torch_device = resolve_device(device)
    env = make_env(cfg.env, render_mode="rgb_array" if video else None)
    try:
        agent = build_agent(cfg, env.observation_space, env.action_space, 1, torch_device)
        load_into(path, agent.state_groups(), map_location=torch_device)
        frames: list[np.ndarray] = []
        base_seed = (cfg.seed + EVAL_SEED_OFFSET) if seed is None else seed
        returns = evaluate_policy(agent, env, episodes, base_seed, frames if video else None)
    finally:
        env.close()
    result = {
        "checkpoint": str(path),
        "episodes": episodes,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
    }
    if video:
        result["video"] = str(
            write_video(frames, run_dir / "videos" / f"{path.name}.mp4", env.metadata.get("render_fps", 30))
        )
    return result


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    import imageio.v2 as imageio  # TensorBoard's add_video needs moviepy 1; write the mp4 directly

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def main(argv: list[str] | None = None) -> None:
    try:
        run_dir, options = parse_arguments(list(sys.argv[1:] if argv is None else argv))
        result = evaluate_run(run_dir, **options)
    except (ValueError, FileNotFoundError, gym.error.Error) as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{PROGRAM}: {result['episodes']} episodes from {result['checkpoint']}: "
        f"return {result['return_mean']:.2f} +- {result['return_std']:.2f}"
    )
    if "video" in result:
        print(f"{PROGRAM}: video written to {result['video']}")


if __name__ == "__main__":
    main()
