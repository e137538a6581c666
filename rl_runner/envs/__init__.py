"""Environments: building them from the ``env`` config group, wrappers, snapshots, and the project's own envs.
Importing this package registers those with gymnasium (``rl_runner/TMaze-v0``, ``envs/tmaze.py``), so
``gymnasium.make`` and ``env.id`` find them; it loads gymnasium, never MuJoCo or ALE."""

import rl_runner.envs.tmaze  # noqa: F401  (registers rl_runner/TMaze-v0 on import)
