"""Config schemas, registered in Hydra's ConfigStore.

Every YAML file under ``conf/`` starts with ``defaults: [/schema/<group>/<name>@_here_, _self_]``, so Hydra
checks each key and type against these dataclasses while composing: a typo or a wrong type fails before a
run directory exists. Defaults live in the YAML files; the schemas hold types and the neutral defaults a
new YAML inherits.

Adding an agent: a dataclass below (``runner`` names the loop that drives it, ``action_spaces`` what it
can act in), its ``cs.store`` line, ``conf/agent/<name>.yaml`` and ``rl_runner/agents/<name>.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Norm(Enum):
    none = "none"
    layer = "layer"
    batch = "batch"


class Init(Enum):
    default = "default"
    he = "he"
    xavier = "xavier"
    orthogonal = "orthogonal"
    fanin_uniform = "fanin_uniform"


class Activation(Enum):
    relu = "relu"
    tanh = "tanh"
    elu = "elu"
    leaky_relu = "leaky_relu"
    gelu = "gelu"
    silu = "silu"


class ActionSpace(Enum):
    continuous = "continuous"
    discrete = "discrete"


class Preprocess(Enum):
    none = "none"
    atari = "atari"


class ExplorationNoise(Enum):
    gaussian = "gaussian"
    ou = "ou"


class MatmulPrecision(Enum):
    highest = "highest"  # true float32
    high = "high"  # TF32 on Ampere+ GPUs
    medium = "medium"  # bf16 inner products on GPUs and on CPUs with bf16 support (oneDNN)


@dataclass
class NetConfig:
    hidden: int = 256
    depth: int = 2
    norm: Norm = Norm.none
    init: Init = Init.default
    activation: Activation = Activation.relu


@dataclass
class NetOverride:
    """Per-network changes to the shared ``net`` group; a field left null inherits from ``net``."""

    hidden: Optional[int] = None
    depth: Optional[int] = None
    norm: Optional[Norm] = None
    init: Optional[Init] = None
    activation: Optional[Activation] = None


@dataclass
class AgentConfig:
    name: str = MISSING
    runner: str = MISSING
    action_spaces: List[ActionSpace] = field(default_factory=list)


@dataclass
class OffPolicyAgentConfig(AgentConfig):
    runner: str = "off_policy"
    gamma: float = 0.99
    batch_size: int = 256
    buffer_size: int = 1_000_000
    learning_starts: int = 10_000  # environment transitions of uniform random actions before learning
    updates_per_step: float = 1.0  # gradient updates per environment transition; fractions allowed
    compile: bool = False  # torch.compile the loss computations (slower on small CPU nets; meant for GPUs)


@dataclass
class DDPGConfig(OffPolicyAgentConfig):
    name: str = "ddpg"
    action_spaces: List[ActionSpace] = field(default_factory=lambda: [ActionSpace.continuous])
    alpha: float = 3e-4  # actor learning rate
    beta: float = 3e-4  # critic learning rate
    tau: float = 0.005
    noise: ExplorationNoise = ExplorationNoise.gaussian
    noise_scale: float = 0.1  # standard deviation, as a fraction of half the action range
    ou_theta: float = 0.15
    actor_net: NetOverride = field(default_factory=NetOverride)
    critic_net: NetOverride = field(default_factory=NetOverride)


@dataclass
class EnvConfig:
    id: str = MISSING  # gymnasium id
    action_space: ActionSpace = MISSING  # declared so an impossible agent x env pair fails before a run starts
    num_envs: int = 1
    max_episode_steps: Optional[int] = None  # null keeps the env's registered limit
    preprocess: Preprocess = Preprocess.none
    frame_stack: int = 4  # used by preprocess=atari
    kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make


@dataclass
class EvalConfig:
    every: int = 10_000  # environment steps between evaluations; 0 disables periodic evaluation
    episodes: int = 5


@dataclass
class CheckpointConfig:
    every: int = 50_000  # environment steps between checkpoints; one is always written at the end
    keep: int = 3
    save_replay: bool = False


@dataclass
class LogConfig:
    every: int = 1_000  # environment steps between scalar flushes to TensorBoard


@dataclass
class Config:
    agent: Any = MISSING
    env: EnvConfig = MISSING
    net: NetConfig = MISSING
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    total_steps: int = 1_000_000
    matmul_precision: MatmulPrecision = MatmulPrecision.highest
    progress: bool = True
    resume: Optional[str] = None  # a run directory to continue
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # under schema/ so that `rl-train --help` lists only real choices in the agent/env/net groups
    cs.store(group="schema/agent", name="ddpg", node=DDPGConfig)
    cs.store(group="schema/env", name="env", node=EnvConfig)
    cs.store(group="schema/net", name="mlp", node=NetConfig)


register_configs()
