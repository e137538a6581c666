"""Hydra-configured deep-RL experiment runner. Importing the package registers its own gymnasium envs
(``rl_runner/TMaze-v0``, ``rl_runner/envs/tmaze.py``), so ``gymnasium.make`` and ``env.id`` configs find them."""

import rl_runner.envs.tmaze  # noqa: F401  (registers rl_runner/TMaze-v0 on import)
