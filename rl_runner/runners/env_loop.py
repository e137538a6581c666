"""What every runner that steps gymnasium envs shares, whatever its cadence (off-policy replay, on-policy rollouts):
the envs themselves, one step of all of them, episode bookkeeping and logging, env snapshots for an exact resume,
deterministic-policy evaluation, and loading a trained agent for ``rl-eval`` and the Python API.

A runner subclasses ``EnvLoop`` and writes ``advance``: choose actions (``agent.act`` or anything else), hand them
to ``step``, and update when its cadence says so (``runners/off_policy.py`` is the example). Its ``run`` is
``train_in_envs(cfg, context, <its loop class>)``. The loop logs the env's own rewards; what the agent learns
from is its business.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner.agents import build_agent
from rl_runner.agents.base import EnvAgent, Transition
from rl_runner.checkpoint import Stateful, load_finite_into
from rl_runner.clock import Clock
from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.envs.state import UnsupportedEnvState, restore_vector_env_state, vector_env_state
from rl_runner.logging import RunLogger
from rl_runner.runners.base import RunContext, RunSkeleton, TrainedAgent
from rl_runner.video import ClipFrames, allow_headless_rendering, video_fps, write_video

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes never share seeds with training episodes
RECENT_EPISODES = 10  # training returns averaged in the summary


def make_agent(
    cfg: DictConfig,
    env: gym.Env | gym.vector.VectorEnv,
    device: torch.device,
    clock: Clock,
    num_envs: int | None = None,
) -> EnvAgent:
    """The configured agent for this env (a single env or a vector env of ``env.num_envs`` copies).
    ``num_envs`` overrides the count: rl-eval plays one env with an agent whose per-env state (acting
    states, exploration noise) must fit the checkpoint of a run trained with several."""
    vector = isinstance(env, gym.vector.VectorEnv)
    return build_agent(
        cfg.agent,
        net=cfg.net,
        observation_space=env.single_observation_space if vector else env.observation_space,
        action_space=env.single_action_space if vector else env.action_space,
        num_envs=num_envs or (env.num_envs if vector else 1),
        device=device,
        clock=clock,
    )


def train_in_envs(cfg: DictConfig, context: RunContext, loop_class: type[EnvLoop]) -> dict:
    """An env runner's ``run``: the training envs and an evaluation env, the agent, and ``loop_class`` driven by the
    run skeleton; the envs are closed however the run ends."""
    if cfg.eval.video:
        allow_headless_rendering()  # before the training envs load MuJoCo
    envs = make_vector_env(cfg.env)
    eval_env = make_env(cfg.env, render_mode="rgb_array" if cfg.eval.video else None)
    try:
        clock = Clock(horizon=int(cfg.total_steps))
        agent = make_agent(cfg, envs, context.device, clock)
        skeleton = RunSkeleton(cfg, context, agent, loop_class(cfg, agent, envs, eval_env, clock), clock)
        skeleton.start()
        return skeleton.run()
    finally:
        envs.close()
        eval_env.close()


class EnvLoop:
    """The ``Loop`` of ``runners/base.py`` for env runners, but for ``advance``, which each runner writes."""

    def __init__(
        self, cfg: DictConfig, agent: EnvAgent, envs: gym.vector.VectorEnv, eval_env: gym.Env, clock: Clock
    ) -> None:
        self.agent = agent
        self.envs = envs
        self.eval_env = eval_env
        self.clock = clock
        self.num_envs = envs.num_envs
        self.seed = int(cfg.seed)
        self.eval_episodes = int(cfg.eval.episodes)
        self.eval_video = bool(cfg.eval.video)  # eval_env renders rgb_array frames then
        self.obs: np.ndarray | None = None  # [N, *obs_shape] what the agent acts on next
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.episodes = 0
        self.recent_returns: list[float] = []
        self.reports_success = False  # whether the env has reported info["is_success"] at an episode end

    # ---------------------------------------------------------------- state
    def begin(self, saved: dict | None) -> None:
        if saved is None:
            self.obs, _ = self.envs.reset(seed=self.seed)
            return
        self.episodes, self.recent_returns = saved["episodes"], list(saved["recent_returns"])
        self.reports_success = saved["reports_success"]
        try:
            if saved["env_state"] is None:
                raise UnsupportedEnvState(saved["env_state_missing"])
            restore_vector_env_state(self.envs, saved["env_state"])
            self.obs = saved["obs"]
            self.episode_returns = saved["episode_returns"]
            self.episode_lengths = saved["episode_lengths"]
        except UnsupportedEnvState as reason:
            log.warning("cannot continue the interrupted episodes (%s): starting new ones", reason)
            self.obs, _ = self.envs.reset(seed=self.seed + self.clock.step)
            self.agent.reset(np.ones(self.num_envs, dtype=bool))

    def state_dict(self) -> dict:
        try:
            env_state, missing = vector_env_state(self.envs), None
        except UnsupportedEnvState as reason:
            env_state, missing = None, str(reason)
        return {
            "episodes": self.episodes,
            "recent_returns": list(self.recent_returns),
            "reports_success": self.reports_success,
            "env_state": env_state,
            "env_state_missing": missing,
            "obs": self.obs,
            "episode_returns": self.episode_returns,
            "episode_lengths": self.episode_lengths,
        }

    def replay_groups(self) -> Mapping[str, Stateful]:
        """State saved only with ``checkpoint.save_replay=true``: none, unless the runner's agents keep a replay."""
        return {}

    # ---------------------------------------------------------------- one step of every env
    def step(self, actions: np.ndarray, logger: RunLogger) -> None:
        """``actions`` [N, *action_shape] in every env: the transitions (with the env's infos and the real final
        observations) go to ``agent.observe``, the clock moves on by N, and ended episodes are logged and reset."""
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        done = terminated | truncated
        # the env's own rewards, counted before the agent sees (and may transform) them
        self.episode_returns += rewards
        self.episode_lengths += 1
        real_next_obs = next_obs
        if done.any():  # SAME_STEP autoreset: next_obs already starts a new episode there
            real_next_obs = next_obs.copy()
            for index in np.flatnonzero(done):
                real_next_obs[index] = infos["final_obs"][index]
        self.agent.observe(Transition(self.obs, actions, rewards, real_next_obs, terminated, truncated, infos))
        self.obs = next_obs
        self.clock.step += self.num_envs
        if done.any():
            self._finish_episodes(done, infos, logger)
            self.agent.reset(done)

    def _finish_episodes(self, done: np.ndarray, infos: Mapping[str, Any], logger: RunLogger) -> None:
        final_info = infos.get("final_info", {})
        reported = final_info.get("_is_success", np.zeros(self.num_envs, dtype=bool))
        self.reports_success = self.reports_success or bool(reported[done].any())
        for index in np.flatnonzero(done):
            episode_return = float(self.episode_returns[index])
            scalars = {"train/episode_return": episode_return, "train/episode_length": int(self.episode_lengths[index])}
            if self.reports_success:  # an episode cut without it (an added time limit) failed
                scalars["train/episode_success"] = float(reported[index] and final_info["is_success"][index])
            logger.scalars(scalars, self.clock.step)
            self.episodes += 1
            self.recent_returns = (self.recent_returns + [episode_return])[-RECENT_EPISODES:]
        self.episode_returns[done] = 0.0
        self.episode_lengths[done] = 0

    # ---------------------------------------------------------------- evaluation and reports
    def evaluate(self) -> dict[str, Any]:
        if self.eval_episodes <= 0:
            return {}
        clip = ClipFrames() if self.eval_video else None  # gets the first episode's frames, up to its cap
        limit, seed = (clip.max_frames if clip is not None else None), self.seed + EVAL_SEED_OFFSET
        episodes = evaluate_policy(self.agent, self.eval_env, self.eval_episodes, seed, clip, limit)
        metrics: dict[str, Any] = {
            "eval/return_mean": float(episodes.returns.mean()),
            "eval/return_std": float(episodes.returns.std()),
        }
        if episodes.successes is not None:
            metrics["eval/success_rate"] = float(episodes.successes.mean())
        video = clip.video(video_fps(self.eval_env)) if clip is not None else None
        if video is not None:
            metrics["videos/eval"] = video
        return metrics

    def summary(self) -> dict:
        summary: dict[str, Any] = {"episodes": self.episodes}
        if self.recent_returns:
            summary["train/return_mean_last10"] = float(np.mean(self.recent_returns))
        return summary

    def status(self) -> dict[str, float]:
        return {"return": self.recent_returns[-1]} if self.recent_returns else {}


class EvalEpisodes(NamedTuple):
    returns: np.ndarray  # [episodes]
    # [episodes] bool, from info["is_success"] at each episode's end (goal-reaching envs such as the T-maze
    # report it); an episode cut without it (an added time limit) failed; None when the env never reports it
    successes: np.ndarray | None


# An evaluation episode of an env without a time limit (a user's env registered without max_episode_steps) ends
# here at the latest: a greedy policy that never reaches a terminal state would otherwise evaluate forever.
UNLIMITED_EPISODE_CUT = 100_000


def has_time_limit(env: gym.Env) -> bool:
    """Whether one of the env's layers is a ``TimeLimit`` (its registration, or ``env.max_episode_steps``)."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.TimeLimit):
            return True
        layer = layer.env
    return False


def evaluate_policy(
    agent: EnvAgent,
    env: gym.Env,
    episodes: int,
    seed: int,
    frames: list[np.ndarray] | None = None,
    max_frames: int | None = None,
) -> EvalEpisodes:
    """``episodes`` episodes of the deterministic policy (seeded, so repeatable). With a ``frames`` list and
    an env made with render_mode="rgb_array", the first episode's frames go there (its first ``max_frames``:
    rendering is what costs, so none is rendered past them)."""
    frame_limit = max_frames if max_frames is not None else float("inf")
    cut = None if has_time_limit(env) else UNLIMITED_EPISODE_CUT
    agent.train_mode(False)
    returns = np.zeros(episodes)
    successes: list[bool | None] = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            agent.reset(np.ones(1, dtype=bool), explore=False)
            done, steps = False, 0
            while not done:
                if frames is not None and episode == 0 and len(frames) < frame_limit:
                    frames.append(env.render())
                action = agent.act(obs[None], explore=False)[0]
                obs, reward, terminated, truncated, info = env.step(action)
                returns[episode] += float(reward)
                done = terminated or truncated
                steps += 1
                if cut is not None and steps >= cut and not done:
                    log.warning(
                        "evaluation episode cut at %d steps: %s has no time limit (set env.max_episode_steps)",
                        cut,
                        env.spec.id if env.spec else type(env.unwrapped).__name__,
                    )
                    done = True
            successes.append(bool(info["is_success"]) if "is_success" in info else None)
    finally:
        agent.train_mode(True)
    reported = any(success is not None for success in successes)
    return EvalEpisodes(returns, np.array([bool(success) for success in successes]) if reported else None)


# -------------------------------------------------------------------- rl-eval and the Python API
def load_trained(cfg: DictConfig, checkpoint: Path, device: torch.device) -> TrainedAgent:
    """A checkpoint's agent, in evaluation mode, with the spaces of one env of the run."""
    env = make_env(cfg.env)  # for its spaces; an ALE env holds an emulator, so it is closed at once
    try:
        return trained_for(cfg, checkpoint, device, env)
    finally:
        env.close()


def trained_for(cfg: DictConfig, checkpoint: Path, device: torch.device, env: gym.Env) -> TrainedAgent:
    """A checkpoint's agent, in evaluation mode, for acting in envs like ``env``. It is built for the run's
    ``env.num_envs``, so that the per-env state groups saved with it (DRQN's acting states, OU noise) fit, and at
    the end of its schedules: nothing it does when acting then depends on the time. Acting with
    ``explore=False`` uses none of the per-env state, so the batch size of ``act`` is free."""
    agent = make_agent(cfg, env, device, Clock.at_end(int(cfg.total_steps)), num_envs=int(cfg.env.num_envs))
    load_finite_into(checkpoint, agent.state_groups(), map_location=device)
    agent.train_mode(False)
    return TrainedAgent(agent, cfg, checkpoint, device, env.observation_space, env.action_space)


def evaluate(cfg: DictConfig, checkpoint: Path, device: torch.device, options: dict[str, str]) -> dict:
    """Deterministic-policy episodes from a checkpoint: ``episodes=N`` (10), ``seed=N``, ``video=true``."""
    episodes = _integer_option(options, "episodes", 10)
    seed = _integer_option(options, "seed", cfg.seed + EVAL_SEED_OFFSET)
    video = options.get("video", "false").lower() in ("1", "true", "yes")
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: must be at least 1")
    allow_headless_rendering()
    env = make_env(cfg.env, render_mode="rgb_array" if video else None)
    try:
        agent = trained_for(cfg, checkpoint, device, env).agent
        frames: list[np.ndarray] = []
        results = evaluate_policy(agent, env, episodes, seed, frames if video else None)
    finally:
        env.close()
    returns = results.returns
    if not np.isfinite(returns).all():
        raise ValueError(f"{checkpoint}: the policy's returns are not finite ({returns.tolist()})")
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "episodes": episodes,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
    }
    summary = f"{episodes} episodes from {checkpoint}: return {result['return_mean']:.2f} +- {result['return_std']:.2f}"
    if results.successes is not None:
        result["success_rate"] = float(results.successes.mean())
        summary += f", success rate {result['success_rate']:.2f}"
    if video:
        path = checkpoint.parents[1] / "videos" / f"{checkpoint.name}.mp4"
        result["video"] = str(write_video(frames, path, video_fps(env)))
        summary += f"\nvideo written to {result['video']}"
    result["report"] = summary
    return result


def _integer_option(options: dict[str, str], name: str, default: int) -> int:
    try:
        return int(options.get(name, default))
    except ValueError:
        raise ValueError(f"{name}={options[name]!r} is not an integer") from None
