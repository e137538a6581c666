"""Config schemas: the types and value bounds of every config group, as plain dataclasses.

Hydra registers them in its ConfigStore under ``schema/<group>/<name>`` (``rl_runner/config/store.py``), and every
YAML file under ``conf/`` starts with ``defaults: [/schema/<group>/<name>@_here_, _self_]``, so each key and type is
checked while composing: a typo or a wrong type fails before a run directory exists. The schemas hold types and
value bounds only; every default lives in a YAML file (a key a YAML file forgets is reported as missing, never
silently filled in from here). This module imports no Hydra: networks and agents use ``MLPConfig`` as a plain spec.

Bounds are field metadata (``positive()``, ``at_least(0)``, ``within(0, 1)``): OmegaConf does not run
``__post_init__`` on merged overrides, so ``rl_runner.config.checks.check_values`` walks the composed
config and applies them as an explicit step, on the command line and again inside every job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from omegaconf import MISSING, OmegaConf

from rl_runner.choices import (
    ActionSpace,
    Activation,
    Direction,
    ExplorationNoise,
    GANLoss,
    Init,
    LRSchedule,
    MatmulPrecision,
    Norm,
    RecurrentCell,
    Refill,
    Scaling,
    Scoring,
    SequenceReplay,
)

# ------------------------------------------------------------------------------------------- bounds
Check = Callable[[Any], "str | None"]  # returns what is wrong with a value, or None


def _checked(check: Check, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"check": check})


def positive() -> Any:
    return _checked(lambda v: None if 0 < v < math.inf else "must be positive and finite")


def at_least(low: float) -> Any:
    return _checked(lambda v: None if low <= v < math.inf else f"must be at least {low} and finite")


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """low <= v <= high; an open end excludes its bound."""

    def check(value: float) -> str | None:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if above and below and math.isfinite(value):
            return None
        return f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    return _checked(check)


def optional_at_least(low: int, default: Any = MISSING) -> Any:
    return _checked(lambda v: None if v is None or v >= low else f"must be null or at least {low}", default)


# ------------------------------------------------------------------------------------------- net
@dataclass
class MLPConfig:
    name: str = MISSING  # the net option; agents list the ones they can build in agent.nets
    hidden: int = positive()
    depth: int = at_least(0)
    norm: Norm = MISSING
    init: Init = MISSING
    activation: Activation = MISSING


@dataclass
class Conv1DConfig:
    name: str = MISSING
    width: int = positive()  # channels of the first layer; they double with each further layer
    depth: int = positive()  # stride-2 layers


@dataclass
class PixelNetConfig:
    """A convolutional torso for image observations [C, H, W], then ``hidden`` units in the agent's head."""

    name: str = MISSING
    channels: List[int] = MISSING  # output channels of each conv layer
    kernels: List[int] = MISSING  # square kernel size of each layer
    strides: List[int] = MISSING  # stride of each layer
    hidden: int = positive()  # units of the head's hidden layer
    init: Init = MISSING
    activation: Activation = MISSING

    @staticmethod
    def feature_map(height: int, width: int, kernels: List[int], strides: List[int]) -> tuple[int, int] | None:
        """The height and width these conv layers leave of an image (no padding), or None where a kernel is larger
        than what the layers before it left."""
        for kernel, stride in zip(kernels, strides):
            if kernel > height or kernel > width:
                return None
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        return height, width

    @staticmethod
    def problems(node: Any) -> list[str]:
        lengths = {key: len(node[key]) for key in ("channels", "kernels", "strides")}
        problems = []
        if len(set(lengths.values())) != 1 or not lengths["channels"]:
            sizes = ", ".join(f"net.{key} has {length}" for key, length in lengths.items())
            problems.append(f"net.channels, net.kernels and net.strides need one entry per conv layer ({sizes})")
        for key in lengths:
            if any(value < 1 for value in node[key]):
                problems.append(f"net.{key}={list(node[key])} must all be positive")
        return problems


@dataclass
class NetOverride:
    """Per-network changes to the shared ``net`` group; a field left null inherits from ``net``."""

    hidden: Optional[int] = optional_at_least(1, default=None)
    depth: Optional[int] = optional_at_least(0, default=None)
    norm: Optional[Norm] = None
    init: Optional[Init] = None
    activation: Optional[Activation] = None


# ------------------------------------------------------------------------------------------- agents
@dataclass
class ObjectiveConfig:
    """The number a sweeper optimises: a metric of the run summary and which way is better."""

    metric: str = MISSING
    direction: Direction = MISSING


@dataclass
class AgentConfig:
    name: str = MISSING
    runner: str = MISSING  # the loop that drives this agent (rl_runner/runners/__init__.py)
    nets: List[str] = MISSING  # the net options this agent can build
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


@dataclass
class OffPolicyAgentConfig(AgentConfig):
    action_spaces: List[ActionSpace] = MISSING  # what it can act in: an impossible env fails up front
    gamma: float = within(0.0, 1.0)
    batch_size: int = positive()
    buffer_size: int = positive()
    learning_starts: int = at_least(0)  # environment transitions of uniform random actions before learning
    updates_per_step: float = positive()  # gradient updates per environment transition; fractions allowed
    compile: bool = MISSING  # torch.compile the loss computations (slower on small CPU nets; meant for GPUs)


@dataclass
class DDPGConfig(OffPolicyAgentConfig):
    alpha: float = positive()  # actor learning rate
    beta: float = positive()  # critic learning rate
    tau: float = within(0.0, 1.0, low_open=True)
    noise: ExplorationNoise = MISSING
    noise_scale: float = at_least(0.0)  # standard deviation, as a fraction of half the action range
    ou_theta: float = within(0.0, 100.0)  # mean reversion per unit time; the process steps dt = 0.01
    actor_net: NetOverride = field(default_factory=NetOverride)
    critic_net: NetOverride = field(default_factory=NetOverride)


@dataclass
class RainbowConfig(OffPolicyAgentConfig):
    lr: float = positive()
    adam_eps: float = positive()
    target_update: int = positive()  # updates between target syncs
    tau: float = within(0.0, 1.0, low_open=True)  # 1: copy the online net; below 1: move that part of the way
    grad_clip: float = positive()  # max gradient norm
    double: bool = MISSING
    dueling: bool = MISSING
    per: bool = MISSING
    per_alpha: float = within(0.0, 1.0)  # priority exponent
    per_beta_start: float = within(0.0, 1.0)  # importance-sampling exponent at the start; 1 at the end
    per_eps: float = positive()
    noisy: bool = MISSING
    noisy_sigma0: float = positive()
    n_step: int = positive()
    distributional: bool = MISSING
    atoms: int = at_least(2)
    v_min: float = MISSING
    v_max: float = MISSING
    epsilon_start: float = within(0.0, 1.0)  # epsilon-greedy, used when noisy is off
    epsilon_end: float = within(0.0, 1.0)
    epsilon_fraction: float = within(0.0, 1.0, low_open=True)  # of the run, to go from start to end
    eval_epsilon: float = within(0.0, 1.0)

    @staticmethod
    def problems(node: Any) -> list[str]:
        return [f"agent.v_min={node.v_min} must be below agent.v_max={node.v_max}"] if node.v_min >= node.v_max else []


@dataclass
class DRQNConfig(OffPolicyAgentConfig):
    lr: float = positive()
    adam_eps: float = positive()
    target_update: int = positive()  # updates between target syncs
    tau: float = within(0.0, 1.0, low_open=True)
    grad_clip: float = positive()
    double: bool = MISSING
    dueling: bool = MISSING
    cell: RecurrentCell = MISSING
    rnn_hidden: int = positive()
    replay: SequenceReplay = MISSING
    sequence_length: int = positive()  # steps per sampled sequence (after the burn-in)
    burn_in: int = at_least(0)  # windows only: steps that warm the recurrent state and carry no loss
    stored_state: bool = MISSING  # windows only: start from the acting state stored with the window's first step
    epsilon_start: float = within(0.0, 1.0)
    epsilon_end: float = within(0.0, 1.0)
    epsilon_fraction: float = within(0.0, 1.0, low_open=True)
    eval_epsilon: float = within(0.0, 1.0)

    @staticmethod
    def problems(node: Any) -> list[str]:
        if node.replay == SequenceReplay.episodes and (node.burn_in > 0 or node.stored_state):
            return ["agent.burn_in and agent.stored_state apply to agent.replay=windows (episodes start from zero)"]
        return []


@dataclass
class DatasetAgentConfig(AgentConfig):
    batch_size: int = positive()  # windows per optimiser step; the dataset loop draws the batches
    # the anomaly threshold: this percentile of the scores of normal validation windows (no test label is read)
    threshold_percentile: float = within(0.0, 100.0, low_open=True)


@dataclass
class AutoencoderConfig(DatasetAgentConfig):
    lr: float = positive()
    lr_schedule: LRSchedule = MISSING
    weight_decay: float = at_least(0.0)
    bottleneck: int = positive()


@dataclass
class AnoGANConfig(DatasetAgentConfig):
    lr: float = positive()  # Adam, generator, discriminator and encoder
    adam_betas: List[float] = MISSING  # [beta1, beta2]; DCGAN's [0.5, 0.999]
    latent_dim: int = positive()
    loss: GANLoss = MISSING
    label_smoothing: float = within(0.0, 0.5, high_open=True)  # standard loss: real labels are 1 - this
    spectral_norm: bool = MISSING  # on the discriminator's layers
    gradient_penalty: float = at_least(0.0)  # wgan_gp: weight of the penalty
    generator_every: int = positive()  # discriminator updates per generator update
    gan_steps: int = positive()  # optimiser steps of the generator/discriminator phase
    encoder_steps: int = at_least(0)  # then optimiser steps of the encoder (f-AnoGAN izi_f); 0: no encoder
    encoder_feature_weight: float = at_least(0.0)  # izi_f: kappa, weight of the discriminator-feature residual
    scoring: Scoring = MISSING
    feature_weight: float = within(0.0, 1.0)  # lambda: score = (1 - lambda) residual + lambda feature residual
    search_steps: int = positive()  # latent search: Adam steps on z per window (Gamma)
    search_lr: float = positive()
    search_starts: int = positive()  # random z tried per window; the search starts from the best one
    score_batch: int = positive()  # windows scored at once

    @staticmethod
    def problems(node: Any) -> list[str]:
        problems = []
        betas = list(node.adam_betas)
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            problems.append(f"agent.adam_betas={betas} must be two numbers in [0, 1)")
        if node.scoring == Scoring.encoder and node.encoder_steps == 0:
            problems.append("agent.scoring=encoder needs an encoder: set agent.encoder_steps above 0")
        return problems

    @staticmethod
    def run_problems(cfg: Any) -> list[str]:
        problems = []
        steps = cfg.agent.gan_steps + cfg.agent.encoder_steps
        if cfg.total_steps != steps:
            problems.append(
                f"total_steps={cfg.total_steps}: an anogan run is agent.gan_steps + agent.encoder_steps = {steps} "
                "steps; set those instead"
            )
        window = OmegaConf.select(cfg, "data.window")
        depth = OmegaConf.select(cfg, "net.depth")
        if isinstance(window, int) and isinstance(depth, int) and window < 2**depth:
            problems.append(f"data.window={window} is too short for net.depth={depth} halvings (at least {2**depth})")
        return problems


# ------------------------------------------------------------------------------------------- env and data
@dataclass
class EnvConfig:
    id: str = MISSING  # a gymnasium id, <module>:<id> (imports the module first) or <module>:<Class>
    imports: List[str] = field(default_factory=list)  # modules imported before the env is made (they register it)
    action_space: Optional[ActionSpace] = None  # optional: the env's own space decides; one written here is checked
    num_envs: int = positive()
    max_episode_steps: Optional[int] = optional_at_least(1)  # null keeps the env's registered limit
    # observation/action wrappers applied in order, name -> keyword arguments (rl_runner/envs/wrappers.py)
    wrappers: Dict[str, Dict[str, Any]] = MISSING
    kwargs: Dict[str, Any] = MISSING  # passed to gymnasium.make


@dataclass
class DataConfig:
    source: str = MISSING  # the loader (rl_runner/data/__init__.py)


@dataclass
class FaultsConfig(DataConfig):
    faults: Dict[str, Dict[str, Any]] = MISSING  # fault kind -> its sizes (rl_runner/data/faults.py)


@dataclass
class ArrayDataConfig(FaultsConfig):
    """A numeric series from a .npy or .csv file (or a folder of them), cut into sliding windows."""

    path: str = MISSING
    columns: List[str] = MISSING  # CSV columns to use; empty = every numeric column but the label and dropped ones
    label_column: Optional[str] = MISSING  # 0/1 per row (1 = anomalous); never a feature
    drop_columns: List[str] = MISSING  # numeric columns that are not features (e.g. SKAB's changepoint)
    window: int = positive()  # rows per window
    stride: int = positive()  # rows between window starts
    train_rows: Optional[int] = optional_at_least(1)  # each file's first rows train and validate; the rest test
    val_fraction: float = within(0.0, 1.0, low_open=True, high_open=True)  # of those rows: the last part validates
    scaling: Scaling = MISSING
    val_faults: bool = MISSING  # add a faulty copy (label 1) of each normal validation window
    fault_seed: int = at_least(0)


@dataclass
class WaveformDataConfig(FaultsConfig):
    """A synthetic rotating machine's vibration (rl_runner/data/waveform.py)."""

    seed: int = at_least(0)  # the data's own seed, apart from the run's
    channels: int = positive()
    window: int = positive()  # samples per window
    period: float = positive()  # samples per shaft revolution
    harmonics: List[float] = MISSING  # amplitude of each harmonic of the rotation frequency
    noise: float = at_least(0.0)  # standard deviation of white noise
    speed_jitter: float = within(0.0, 1.0, high_open=True)  # normal speed variation between windows, +-
    amplitude_jitter: float = within(0.0, 1.0, high_open=True)
    train_windows: int = positive()  # normal
    val_windows: int = positive()
    test_windows: int = positive()
    anomaly_fraction: float = within(0.0, 1.0, high_open=True)  # of the validation and test windows
    scaling: Scaling = MISSING


# ------------------------------------------------------------------------------------------- the run
@dataclass
class EvalConfig:
    every: int = at_least(0)  # steps between evaluations; 0 disables periodic evaluation
    episodes: int = at_least(0)  # env runs: episodes per evaluation
    video: bool = MISSING  # env runs: one evaluation episode per evaluation as a TensorBoard video


@dataclass
class CheckpointConfig:
    every: int = at_least(0)  # steps between checkpoints; one is always written at the end
    keep: int = at_least(0)  # newest checkpoints kept; 0 keeps all
    save_replay: bool = MISSING
    best: bool = MISSING  # also keep checkpoints/best: the one with the best objective at an evaluation
    refill: Refill = MISSING  # what acts while a resume without the saved replay refills it


def _optional_positive(default: Any = MISSING) -> Any:
    return _checked(lambda v: None if v is None or 0 < v < math.inf else "must be null or positive", default)


@dataclass
class StopConfig:
    at_objective: Optional[float] = None  # stop once an evaluation's objective reaches this (its direction)
    after_minutes: Optional[float] = _optional_positive(None)  # wall-clock budget of one attempt of the run


@dataclass
class LogConfig:
    every: int = positive()  # steps between scalar flushes to TensorBoard


@dataclass
class Config:
    agent: Any = MISSING
    env: Any = None  # an EnvConfig for runners that step an env, absent for dataset runs
    data: Any = None  # a DataConfig for dataset runs
    net: Any = MISSING
    seed: int = at_least(0)
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    total_steps: int = positive()  # env transitions (summed over envs), or optimiser steps for dataset runs
    matmul_precision: MatmulPrecision = MISSING
    progress: bool = MISSING
    resume: Optional[str] = None  # a run directory (or a sweep directory) to continue
    threads: int = at_least(0)  # torch CPU threads; 0: the cores, shared among a sweep's parallel jobs
    seeds: int = positive()  # runs per job, seeds seed..seed+seeds-1; the job's objective is their mean
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    stop: StopConfig = field(default_factory=StopConfig)


# ------------------------------------------------------------------------------------------- the groups
# group -> option -> schema: what rl_runner/config/store.py registers in Hydra's ConfigStore
SCHEMAS: dict[str, dict[str, type]] = {
    "agent": {
        "ddpg": DDPGConfig,
        "rainbow": RainbowConfig,
        "drqn": DRQNConfig,
        "autoencoder": AutoencoderConfig,
        "anogan": AnoGANConfig,
    },
    "env": {"env": EnvConfig},
    "data": {"array": ArrayDataConfig, "waveform": WaveformDataConfig},
    "net": {"mlp": MLPConfig, "conv1d": Conv1DConfig, "pixels": PixelNetConfig},
}
