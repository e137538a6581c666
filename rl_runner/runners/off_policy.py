"""The environment loop for off-policy agents (DDPG now; Rainbow and DRQN plug in through the same protocol).

The runner owns cadence: random warm-up actions, how many updates per transition, logging, evaluation,
checkpoints and stopping. The agent owns the algorithm: acting, its replay memory and its update.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner.agents import agent_class
from rl_runner.agents.base import OffPolicyAgent
from rl_runner.checkpoint import checkpoint_name, latest_checkpoint, load_into, load_state, save_checkpoint
from rl_runner.envs import make_env, make_vector_env, restore_vector_env_state, vector_env_state
from rl_runner.envs.state import UnsupportedEnvState
from rl_runner.logging import MetricAccumulator, NonFiniteLossError, RunLogger
from rl_runner.runtime import StopSignals, restore_rng_state, rng_state

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes never share seeds with training episodes


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Progress:
    """The loop's counters; saved as part of ``progress.pt``."""

    step: int = 0  # environment transitions so far, summed over parallel envs
    episodes: int = 0
    updates: int = 0
    update_credit: float = 0.0  # fractional updates owed (updates_per_step may be below 1)
    train_seconds: float = 0.0
    recent_returns: list[float] = field(default_factory=list)
    last_eval: dict[str, float] = field(default_factory=dict)


def crossed(step: int, previous_step: int, every: int) -> bool:
    """True when a multiple of ``every`` lies in (previous_step, step]: cadence that works for any num_envs."""
    return every > 0 and step // every > previous_step // every


def random_actions(space: gym.spaces.Space, rng: np.random.Generator, count: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high, size=(count, *space.shape)).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return space.start + rng.integers(space.n, size=count)
    raise ValueError(f"no random warm-up actions for {space}")


def evaluate_policy(
    agent: OffPolicyAgent, env: gym.Env, episodes: int, seed: int, frames: list[np.ndarray] | None = None
) -> np.ndarray:
    """Returns of ``episodes`` episodes of the deterministic policy (seeded, so repeatable). With a
    ``frames`` list and an env made with render_mode="rgb_array", the first episode's frames go there."""
    agent.train_mode(False)
    returns = np.zeros(episodes)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            agent.reset(np.ones(1, dtype=bool), explore=False)
            done = False
            while not done:
                if frames is not None and episode == 0:
                    frames.append(env.render())
                action = agent.act(obs[None], explore=False)[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[episode] += float(reward)
                done = terminated or truncated
    finally:
        agent.train_mode(True)
    return returns


def build_agent(
    cfg: DictConfig,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    num_envs: int,
    device: torch.device,
) -> OffPolicyAgent:
    return agent_class(cfg.agent.name)(cfg.agent, cfg.net, observation_space, action_space, num_envs, device)


def run_off_policy(cfg: DictConfig, run_dir: Path, device: torch.device, resume_from: Path | None) -> dict:
    envs = make_vector_env(cfg.env)
    eval_env = make_env(cfg.env)
    try:
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, envs.num_envs, device)
        loop = OffPolicyLoop(cfg, run_dir, agent, envs, eval_env)
        loop.start(resume_from)
        return loop.run()
    finally:
        envs.close()
        eval_env.close()


class OffPolicyLoop:
    def __init__(
        self, cfg: DictConfig, run_dir: Path, agent: OffPolicyAgent, envs: gym.vector.VectorEnv, eval_env: gym.Env
    ) -> None:
        self.cfg = cfg
        self.checkpoint_dir = run_dir / "checkpoints"
        self.tb_dir = run_dir / "tb"
        self.agent = agent
        self.envs = envs
        self.eval_env = eval_env
        self.num_envs = envs.num_envs
        self.progress = Progress()
        self.rng = np.random.default_rng(cfg.seed)  # warm-up actions
        self.obs: np.ndarray | None = None
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)

    # ---------------------------------------------------------------- start and checkpoints
    def start(self, resume_from: Path | None) -> None:
        checkpoint = latest_checkpoint(resume_from / "checkpoints") if resume_from is not None else None
        if resume_from is not None and checkpoint is None:
            raise FileNotFoundError(f"resume={resume_from}: no checkpoint under {resume_from / 'checkpoints'}")
        if checkpoint is None:
            self.obs, _ = self.envs.reset(seed=self.cfg.seed)
            return
        log.info("resuming from %s", checkpoint)
        load_into(checkpoint, self.agent.state_groups(), map_location=self.agent.device)
        if (checkpoint / "replay.pt").exists():
            self.agent.replay.load_state_dict(load_state(checkpoint, "replay", self.agent.device))
        else:
            log.warning(
                "%s holds no replay buffer (checkpoint.save_replay=false): the buffer refills from empty", checkpoint
            )
        saved = load_state(checkpoint, "progress")
        self.progress = Progress(**saved["counters"])
        self.rng.bit_generator.state = saved["warmup_rng"]
        restore_rng_state(saved["rng"])
        try:
            if saved["env_state"] is None:
                raise UnsupportedEnvState("the checkpoint holds no env state")
            restore_vector_env_state(self.envs, saved["env_state"])
            self.obs = saved["obs"]
            self.episode_returns = saved["episode_returns"]
            self.episode_lengths = saved["episode_lengths"]
        except UnsupportedEnvState as reason:
            log.warning("cannot continue the interrupted episodes (%s): starting new ones", reason)
            self.obs, _ = self.envs.reset(seed=self.cfg.seed + self.progress.step)
            self.agent.reset(np.ones(self.num_envs, dtype=bool))

    def save(self) -> Path:
        try:
            env_state = vector_env_state(self.envs)
        except UnsupportedEnvState:
            env_state = None
        states = {name: group.state_dict() for name, group in self.agent.state_groups().items()}
        states["progress"] = {
            "counters": asdict(self.progress),
            "rng": rng_state(),
            "warmup_rng": self.rng.bit_generator.state,
            "env_state": env_state,
            "obs": self.obs,
            "episode_returns": self.episode_returns,
            "episode_lengths": self.episode_lengths,
        }
        if self.cfg.checkpoint.save_replay:
            states["replay"] = self.agent.replay.state_dict()
        return save_checkpoint(self.checkpoint_dir, self.progress.step, states, keep=self.cfg.checkpoint.keep)

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict:
        cfg, agent, progress = self.cfg, self.agent, self.progress
        total_steps = int(cfg.total_steps)
        learning_starts = int(cfg.agent.learning_starts)
        updates_per_step = float(cfg.agent.updates_per_step)
        # normally reached at learning_starts; after a resume without a saved replay, the buffer refills first
        min_replay = min(max(int(agent.batch_size), learning_starts), agent.replay.capacity)
        log_every, eval_every, checkpoint_every = int(cfg.log.every), int(cfg.eval.every), int(cfg.checkpoint.every)
        metrics = MetricAccumulator()
        logger = RunLogger(self.tb_dir, total_steps, progress.step, show_progress=cfg.progress)
        interval_start, interval_step = time.perf_counter(), progress.step
        try:
            with StopSignals() as signals:
                while progress.step < total_steps and signals.received is None:
                    previous_step = progress.step
                    self._collect(explore_randomly=previous_step < learning_starts, logger=logger)
                    if progress.step >= learning_starts and len(agent.replay) >= min_replay:
                        progress.update_credit += self.num_envs * updates_per_step
                        while progress.update_credit >= 1.0:
                            metrics.add(agent.update())
                            progress.update_credit -= 1.0
                            progress.updates += 1

                    logger.advance(self.num_envs)
                    if crossed(progress.step, previous_step, log_every):
                        now = time.perf_counter()
                        sps = (progress.step - interval_step) / (now - interval_start)
                        progress.train_seconds += now - interval_start
                        interval_start, interval_step = now, progress.step
                        self._flush(metrics, logger, {"charts/sps": sps, "charts/updates": progress.updates})
                    if crossed(progress.step, previous_step, eval_every):
                        self._evaluate(logger)
                    if crossed(progress.step, previous_step, checkpoint_every):
                        self._flush(metrics, logger)
                        self.save()
                # still inside the signal handler: a Ctrl-C during the final evaluation cannot skip the save
                progress.train_seconds += time.perf_counter() - interval_start
                self._flush(metrics, logger)
                if (
                    signals.received is None
                    and cfg.eval.episodes > 0
                    and progress.last_eval.get("step") != progress.step
                ):
                    self._evaluate(logger)
                latest = latest_checkpoint(self.checkpoint_dir)
                already_saved = latest is not None and latest.name == checkpoint_name(progress.step)
                checkpoint = latest if already_saved else self.save()
                interrupted_by = signals.received
            summary = self._summary(checkpoint, interrupted_by)
            if interrupted_by is None:  # a resumed run reports its hyperparameters once, when it finishes
                logger.hparams(cfg, summary, progress.step)
            return summary
        except NonFiniteLossError as error:
            last_good = latest_checkpoint(self.checkpoint_dir)
            raise TrainingDiverged(
                f"training diverged at step {progress.step}: {error}; last good checkpoint: {last_good or 'none'}"
            ) from error
        finally:
            logger.close()

    def _collect(self, explore_randomly: bool, logger: RunLogger) -> None:
        """One step of every env; the transitions go to the agent's replay."""
        if explore_randomly:
            actions = random_actions(self.envs.single_action_space, self.rng, self.num_envs)
        else:
            actions = self.agent.act(self.obs, explore=True)
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        done = terminated | truncated
        stored_next_obs = next_obs
        if done.any():  # SAME_STEP autoreset: next_obs already starts a new episode there
            stored_next_obs = next_obs.copy()
            for index in np.flatnonzero(done):
                stored_next_obs[index] = infos["final_obs"][index]
        self.agent.replay.add(self.obs, actions, rewards, stored_next_obs, terminated, truncated)
        self.obs = next_obs
        self.progress.step += self.num_envs
        self.episode_returns += rewards
        self.episode_lengths += 1
        if done.any():
            self._finish_episodes(done, logger)
            self.agent.reset(done)

    def _finish_episodes(self, done: np.ndarray, logger: RunLogger) -> None:
        for index in np.flatnonzero(done):
            episode_return = float(self.episode_returns[index])
            logger.scalars(
                {"train/episode_return": episode_return, "train/episode_length": int(self.episode_lengths[index])},
                self.progress.step,
            )
            self.progress.episodes += 1
            self.progress.recent_returns = (self.progress.recent_returns + [episode_return])[-10:]
        self.episode_returns[done] = 0.0
        self.episode_lengths[done] = 0

    def _flush(self, metrics: MetricAccumulator, logger: RunLogger, extra: dict[str, float] | None = None) -> None:
        means = metrics.pop_means()  # raises NonFiniteLossError before anything is saved
        logger.scalars({**means, **(extra or {})}, self.progress.step)
        summary = {"sps": extra["charts/sps"]} if extra else {}
        if self.progress.recent_returns:
            summary["return"] = self.progress.recent_returns[-1]
        logger.advance(0, summary)

    def _evaluate(self, logger: RunLogger) -> None:
        episodes = int(self.cfg.eval.episodes)
        if episodes <= 0:
            return
        returns = evaluate_policy(self.agent, self.eval_env, episodes, seed=self.cfg.seed + EVAL_SEED_OFFSET)
        result = {"eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std())}
        logger.scalars(result, self.progress.step)
        self.progress.last_eval = {**result, "step": self.progress.step}

    def _summary(self, checkpoint: Path, interrupted_by: int | None) -> dict:
        progress = self.progress
        summary: dict = {
            "step": progress.step,
            "episodes": progress.episodes,
            "updates": progress.updates,
            "sps": progress.step / progress.train_seconds if progress.train_seconds > 0 else 0.0,
            "checkpoint": str(checkpoint),
            "interrupted": interrupted_by is not None,
        }
        if progress.recent_returns:
            summary["train/return_mean_last10"] = float(np.mean(progress.recent_returns))
        summary.update({k: v for k, v in progress.last_eval.items() if k != "step"})
        return summary
