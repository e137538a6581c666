"""rl_runner/envs/quiet_mujoco.py: HalfCheetah is made without MuJoCo's ``settotalmass`` warning on fd 2, while
every other line written to stderr, MuJoCo's other warnings included, still comes through."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

from rl_runner.envs.quiet_mujoco import _uses_mujoco, quiet_mujoco

mujoco = pytest.importorskip("mujoco")


def _unstable_step() -> None:
    """One step of a body with a NaN velocity: MuJoCo warns 'Nan, Inf or huge value in QVEL' through the same
    warning handler."""
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><freejoint/><geom size='0.1'/></body></worldbody></mujoco>"
    )
    data = mujoco.MjData(model)
    data.qvel[:] = np.nan
    mujoco.mj_step(model, data)


def test_half_cheetah_is_made_without_the_settotalmass_warning(capfd: pytest.CaptureFixture[str]) -> None:
    with quiet_mujoco("HalfCheetah-v5"):
        env = gym.make("HalfCheetah-v5")
        os.write(2, b"a line of our own\n")
        _unstable_step()
    env.close()
    err = capfd.readouterr().err
    assert "settotalmass" not in err
    assert "a line of our own\n" in err
    assert "WARNING: Nan, Inf or huge value in QVEL" in err


def test_the_warning_handler_is_restored_on_leaving(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Outside the context MuJoCo prints the warning again (nothing is hidden for good), and a handler installed
    before is the one that gets the other warnings, then is put back."""
    monkeypatch.chdir(tmp_path)  # MuJoCo's own handler appends to MUJOCO_LOG.TXT in the working directory
    seen: list[str] = []
    before = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(seen.append)
    try:
        with quiet_mujoco("HalfCheetah-v5"):
            gym.make("HalfCheetah-v5").close()
            _unstable_step()
        assert mujoco.get_mju_user_warning() == seen.append
        assert len(seen) == 1 and "QVEL" in seen[0]
    finally:
        mujoco.set_mju_user_warning(before)
    assert capfd.readouterr().err == ""
    gym.make("HalfCheetah-v5").close()
    assert "settotalmass" in capfd.readouterr().err


def test_only_mujoco_envs_load_mujoco(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CartPole run never imports MuJoCo for this (``video.py`` sets MUJOCO_GL before that import)."""
    monkeypatch.delitem(sys.modules, "mujoco")
    assert not _uses_mujoco("CartPole-v1")
    assert not _uses_mujoco("NoSuchEnv-v0")
    assert _uses_mujoco("HalfCheetah-v5")
    assert _uses_mujoco(gym.spec("Hopper-v5"))  # make_env passes a spec for env.id=<module>:<class>
    assert not _uses_mujoco(EnvSpec(id="Mine-v0", entry_point=lambda: gym.make("CartPole-v1")))
    with quiet_mujoco("CartPole-v1"):
        gym.make("CartPole-v1").close()
    assert "mujoco" not in sys.modules
