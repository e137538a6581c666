"""The values a config key can take, as enums: a plain module (no Hydra, no torch), so that networks, buffers,
envs and agents can name a choice without loading the config machinery. The schemas (``rl_runner/schemas.py``)
type their fields with these, and Hydra turns the YAML strings into them while composing."""

from __future__ import annotations

from enum import Enum


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


class ExplorationNoise(Enum):
    gaussian = "gaussian"
    ou = "ou"


class MatmulPrecision(Enum):
    highest = "highest"  # true float32
    high = "high"  # TF32 on Ampere+ GPUs
    medium = "medium"  # bf16 inner products on GPUs and on CPUs with bf16 support (oneDNN)


class Direction(Enum):
    max = "max"
    min = "min"


class LRSchedule(Enum):
    constant = "constant"
    linear = "linear"  # to zero at the end of the schedule horizon
    cosine = "cosine"  # half a cosine to zero at the end of the schedule horizon


class RecurrentCell(Enum):
    lstm = "lstm"
    gru = "gru"
    none = "none"  # a feed-forward layer of the same width: the memoryless baseline


class SequenceReplay(Enum):
    episodes = "episodes"  # whole episodes (cut at sequence_length) from a zero state
    windows = "windows"  # fixed-length windows with a burn-in prefix (R2D2)


class Scaling(Enum):
    none = "none"
    standard = "standard"  # zero mean, unit variance per channel, fitted on the training split only


class GANLoss(Enum):
    standard = "standard"  # the non-saturating cross-entropy GAN (DCGAN)
    wgan_gp = "wgan_gp"  # Wasserstein critic with a gradient penalty


class Scoring(Enum):
    latent_search = "latent_search"  # AnoGAN: optimise z for each window
    encoder = "encoder"  # f-AnoGAN: z from a trained encoder, one forward pass


class Refill(Enum):
    """What acts while a resume without the saved replay (checkpoint.save_replay=false) refills it."""

    policy = "policy"  # the trained policy with its exploration, as after learning_starts
    random = "random"  # uniformly random actions, as before learning_starts
