from rl_runner.buffers.replay import ReplayBuffer, TransitionBatch

__all__ = ["ReplayBuffer", "TransitionBatch"]
