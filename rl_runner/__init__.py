"""Hydra-configured deep-RL experiment runner. Importing the package registers its own gymnasium envs
(``rl_runner/TMaze-v0``, see ``rl_runner.envs.tmaze``), so ``gymnasium.make`` and ``env.id`` configs find them."""


def _register_envs() -> None:
    # The same registration as rl_runner.envs.tmaze.register_tmaze, done here without importing that module:
    # importing rl_runner.envs would pull in hydra and MuJoCo, and the console scripts import this package
    # before they install their quiet Ctrl-C handler. The entry point is a string, so the env module itself
    # loads on the first gymnasium.make.
    import gymnasium

    if "rl_runner/TMaze-v0" not in gymnasium.registry:
        gymnasium.register("rl_runner/TMaze-v0", entry_point="rl_runner.envs.tmaze:TMazeEnv", max_episode_steps=None)


_register_envs()
