"""Silencing MuJoCo's ``settotalmass`` deprecation warning while an env's model is compiled.

MuJoCo 4 warns that the ``settotalmass`` compiler attribute is deprecated every time a model using it (gymnasium's
``half_cheetah.xml``) is compiled, that is at every ``gym.make("HalfCheetah-v5")``. The warning comes from the C
library (printed to fd 2 and appended to ``MUJOCO_LOG.TXT`` in the working directory), so Python's warnings filter
cannot hide it. MuJoCo lets a program replace its warning handler (``mujoco.set_mju_user_warning``): inside
``quiet_mujoco`` a handler drops exactly that message and passes every other MuJoCo warning on, to the handler that
was installed before or, when there was none, to stderr as MuJoCo itself prints it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

# the part of MuJoCo's message that names the deprecation (the rest, the advice, may be reworded between releases)
SETTOTALMASS = "'settotalmass' is deprecated"


def _uses_mujoco(env: str | EnvSpec) -> bool:
    """Whether making ``env`` (what ``gym.make`` gets: an id or a spec) may compile a MuJoCo model: MuJoCo is
    imported already (an env class of another package built on gymnasium's ``MujocoEnv`` imports it), or the
    entry point lives in a MuJoCo module (gymnasium's ``gymnasium.envs.mujoco...``). Checked so that a CartPole
    run never imports MuJoCo (150 ms, and ``video.py`` must choose ``MUJOCO_GL`` before that import)."""
    if "mujoco" in sys.modules:
        return True
    try:
        spec = env if isinstance(env, EnvSpec) else gym.spec(env)
    except gym.error.Error:  # an unknown id: gym.make reports it
        return False
    entry_point = spec.entry_point
    where = entry_point.split(":")[0] if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return "mujoco" in (where or "").split(".")


@contextmanager
def quiet_mujoco(env: str | EnvSpec) -> Iterator[None]:
    """While inside, MuJoCo's ``settotalmass`` deprecation warning is dropped and every other MuJoCo warning
    passes as before. ``env`` is what ``gym.make`` is given; for an env that does not use MuJoCo, or where MuJoCo
    is not installed, this does nothing."""
    if not _uses_mujoco(env):
        yield
        return
    try:
        import mujoco
    except ImportError:
        yield
        return
    previous: Callable[[str], None] | None = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if SETTOTALMASS in message:
            return
        if previous is not None:
            previous(message)
        else:  # MuJoCo's own format; the handler runs inside C code, so it must not raise
            try:
                sys.stderr.write(f"WARNING: {message}\n\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
