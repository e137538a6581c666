from rl_runner.buffers.nstep import NStepAccumulator, NStepTransitions
from rl_runner.buffers.prioritized import PrioritizedReplay
from rl_runner.buffers.replay import ReplayBuffer, TransitionBatch
from rl_runner.buffers.sum_tree import SumTree

__all__ = ["NStepAccumulator", "NStepTransitions", "PrioritizedReplay", "ReplayBuffer", "SumTree", "TransitionBatch"]
