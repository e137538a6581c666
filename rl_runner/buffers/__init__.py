from rl_runner.buffers.frames import FrameReplay
from rl_runner.buffers.nstep import NStepAccumulator, NStepTransitions
from rl_runner.buffers.prioritized import PrioritizedReplay
from rl_runner.buffers.replay import ReplayBuffer, TransitionBatch
from rl_runner.buffers.sum_tree import SumTree

__all__ = [
    "FrameReplay",
    "NStepAccumulator",
    "NStepTransitions",
    "PrioritizedReplay",
    "ReplayBuffer",
    "SumTree",
    "TransitionBatch",
]
