"""Hydra-configured deep-RL experiment runner. The package itself imports nothing, so the command line answers
``--help`` or refuses a bad value without loading torch or gymnasium; ``import rl_runner.envs`` registers the
project's own gymnasium envs (``rl_runner/TMaze-v0``)."""
