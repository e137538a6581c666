"""Every mistake in a config, an env or a data file is refused up front (issue 19): one stderr line
``rl-train: error: ...`` naming what to change, exit code 2, and no run directory. In-process through the
command line's ``main`` (rl_runner/train.py, rl_runner/evaluate.py); the refusals that should not even import
torch, gymnasium or MuJoCo in a fresh process; and integral floats for integer keys (``total_steps=2e5``)."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rl_runner.train as train_module
from rl_runner.evaluate import main as rl_eval
from rl_runner.train import main as rl_train
from tests.conftest import REPO_ROOT, cli, one_error_line, run_cli


def never_run() -> None:
    raise AssertionError("the overrides passed every check: rl-train handed them to Hydra, which runs the job")


def refused(main, argv: list[str], capsys: pytest.CaptureFixture, program: str = "rl-train") -> str:
    """The one stderr line of a refusal with exit code 2. Refused up front: were rl-train to hand the overrides to
    Hydra, the test fails there (a job run in-process would also leave Hydra's logging on a closed capture)."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exit_info:
        patch.setattr(train_module, "_hydra_main", never_run)
        patch.setattr(sys, "argv", list(sys.argv))  # rl-train hands Hydra its arguments there
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------ config and env mistakes
CONFIG_MISTAKES = {  # name: (overrides, what the line says)
    "unknown id": (
        ["env=gym", "env.id=Foo-v0"],
        ["env.id='Foo-v0'", "doesn't exist", "env.id=<module>:<id>", "env.imports=[<module>]"],
    ),
    "id of a module that is not installed": (
        ["env=gym", "env.id=nopkg:Foo-v0"],
        ["env.id: cannot import 'nopkg'", "PYTHONPATH"],
    ),
    "imports a module that is not installed": (
        ["env=gym", "env.id=CartPole-v1", "env.imports=[nomod]"],
        ["env.imports: cannot import 'nomod'"],
    ),
    "a keyword argument of the preset's env": (
        ["experiment=drqn_tmaze", "env.id=CartPole-v1"],
        ["env.kwargs.length: CartPole-v1 takes no keyword argument 'length'", "drop it with ~env.kwargs.length"],
    ),
    "a value the env refuses": (
        ["env=tmaze", "env.kwargs.length=0"],
        ["env.id='rl_runner/TMaze-v0' could not be made", "length must be an integer >= 1, got 0"],
    ),
    "a choice the env refuses": (
        ["env=tmaze", "env.kwargs.variant=xx"],
        ["could not be made", "variant must be one of either, both, two_goal, got 'xx'"],
    ),
    "ddpg on discrete actions": (
        ["agent=ddpg", "env=cartpole"],
        ["agent=ddpg cannot run on env.id=CartPole-v1", "discrete actions", "ddpg takes continuous"],
    ),
    "rainbow on continuous actions": (
        ["agent=rainbow", "env=gym", "env.id=Pendulum-v1"],
        ["agent=rainbow cannot run on env.id=Pendulum-v1", "continuous actions", "rainbow takes discrete"],
    ),
    "an mlp on Atari images": (
        ["agent=rainbow", "env=breakout", "net=mlp"],
        ["net=mlp needs vector observations", "env.id=ALE/Breakout-v5", "net=nature_cnn", "flatten_observation"],
    ),
    "an mlp on MinAtar images names the conv torso that fits": (  # nature_cnn does not fit 10x10 (next case)
        ["agent=rainbow", "env=minatar_breakout", "net=mlp"],
        ["net=mlp needs vector observations", "env.id=MinAtar/Breakout-v1", "net=minatar_cnn"],
    ),
    "a conv torso too large for the images": (
        ["agent=rainbow", "env=minatar_breakout", "net=nature_cnn"],
        ["net=nature_cnn", "do not fit the 10x10 images", "choose net=minatar_cnn"],
    ),
    "a constructor's own error": (
        ["agent=rainbow", "env=gym", "env.id=tests.envs.broken:CrashesOnMake"],
        ["env.id='tests.envs.broken:CrashesOnMake' could not be made: RuntimeError: simulator not started"],
    ),
    "actions without bounds": (
        ["agent=ddpg", "env=gym", "env.id=tests.envs.broken:UnboundedActions"],
        ["agent=ddpg needs bounded actions", "Box(-inf, inf, (1,), float32)"],
    ),
    "images with their channels last": (
        ["agent=rainbow", "env=gym", "env.id=tests.envs.broken:ChannelsLast", "net=nature_cnn"],
        ["with their channels last", "+env.wrappers.channels_first={}"],
    ),
    "+hydra.searchpath": (["+hydra.searchpath=[file://conf]"], ["drop the +"]),
    "a conv torso on vectors": (
        ["agent=rainbow", "env=cartpole", "net=nature_cnn"],
        ["net=nature_cnn needs image observations", "env.id=CartPole-v1", "choose net=mlp"],
    ),
    "a net the agent cannot build": (
        ["experiment=rainbow_cartpole", "net=conv1d"],
        ["agent=rainbow cannot build net=conv1d; it builds mlp, nature_cnn, data_efficient_cnn, minatar_cnn"],
    ),
    "no env.id": (["agent=rainbow", "env=gym"], ["no value for env.id", "env.id="]),
    "a bad value": (["agent.gamma=1.5"], ["agent.gamma=1.5 must be in [0.0, 1.0]"]),
    "a non-integral float for an integer key": (
        ["total_steps=1234.5"],
        ["total_steps=1234.5", "could not be converted to Integer"],
    ),
    "a bad choice": (["agent=nope"], ["Could not find 'agent/nope'", "anogan, autoencoder, ddpg, drqn, rainbow"]),
    "an unknown key": (["agent.nokey=1"], ["agent.nokey", "Key 'nokey' not in"]),
    "--cfg job with a bad value": (["--cfg", "job", "agent.gamma=1.5"], ["agent.gamma=1.5 must be in [0.0, 1.0]"]),
}


@pytest.mark.parametrize("name", list(CONFIG_MISTAKES))
def test_a_config_mistake_is_one_line_exit_2_and_no_run_directory(name: str, tmp_path: Path, capsys) -> None:
    overrides, facts = CONFIG_MISTAKES[name]
    run_dir = tmp_path / "run"
    line = refused(rl_train, [*overrides, "device=cpu", f"hydra.run.dir={run_dir}"], capsys)
    for fact in facts:
        assert fact in line, line
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "name", ["an mlp on Atari images", "a conv torso too large for the images"], ids=["atari", "conv too large"]
)
def test_a_refusal_is_one_line_on_the_real_stderr(name: str, tmp_path: Path) -> None:
    """What a user sees: the process's own stderr, which C code writes too (capsys holds Python's sys.stderr only),
    and the run directory rl-train would make (a small budget, should the run start after all)."""
    overrides, facts = CONFIG_MISTAKES[name]
    budget = ["total_steps=200", "agent.learning_starts=100", "agent.buffer_size=1000", "eval.episodes=1"]
    result = run_cli(*overrides, *budget, "device=cpu", "threads=1", f"hydra.run.dir={tmp_path / 'run'}")
    line = one_error_line(result)
    left = sorted(path.name for path in (tmp_path / "run").iterdir()) if (tmp_path / "run").exists() else []
    assert (result.returncode, left) == (2, []), line  # (exit code, what the run directory holds)
    for fact in facts:
        assert fact in line, line


# ------------------------------------------------------------------------------------------- data mistakes
def write_rows(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file for each mistake; a row's file line is its index + 2 (the header is line 1)."""
    folder = tmp_path_factory.mktemp("data")
    good = [f"{i};{math.sin(i / 7):.4f};{math.cos(i / 5):.4f}" for i in range(300)]
    (folder / "empty.csv").write_text("")
    write_rows(folder / "header_only.csv", "t;a;b", [])
    write_rows(folder / "not_numeric.csv", "a;b", [f"{i};{'abc' if i == 50 else i}" for i in range(300)])
    write_rows(folder / "no_numeric_column.csv", "a;b", [f"x{i};y{i}" for i in range(300)])
    write_rows(folder / "nan.csv", "a,b", [f"{i},{'nan' if i == 50 else i}" for i in range(300)])
    write_rows(folder / "inf.csv", "a;b", [f"{i};{'-inf' if i == 50 else i}" for i in range(300)])
    write_rows(folder / "huge.csv", "a;b", [f"{i};{'1e308' if i == 50 else i}" for i in range(300)])
    write_rows(folder / "labels.csv", "a;b;fault", [f"{i};{2 * i};{2 if i == 60 else i % 2}" for i in range(300)])
    write_rows(folder / "few_rows.csv", "t;a;b", good[:20])
    (folder / "folder").mkdir()
    write_rows(folder / "folder" / "a_good.csv", "t;a;b", good)
    write_rows(folder / "folder" / "b_bad.csv", "t;a;b", [r if i != 70 else f"{i};nan;0" for i, r in enumerate(good)])
    (folder / "gzipped.csv").write_bytes(gzip.compress(("t;a;b\n" + "\n".join(good) + "\n").encode()))
    return folder


DATA_MISTAKES = {  # name: (data.path under data_dir, more overrides, what the line says after "data.path=<file>: ")
    "a missing file": ("missing.csv", [], "no such file"),
    "an empty file": ("empty.csv", [], "empty (a header row and at least one data row are needed)"),
    "a header only": ("header_only.csv", [], "empty (a header row and at least one data row are needed)"),
    "a non-numeric value": ("not_numeric.csv", [], "column b is not numeric ('abc' on line 52)"),
    "no numeric column": ("no_numeric_column.csv", [], "no numeric column"),
    "NaN": ("nan.csv", [], "non-finite value nan on line 52, column b"),
    "inf": ("inf.csv", [], "non-finite value -inf on line 52, column b"),
    "1e308": ("huge.csv", [], "value 1e+308 on line 52, column b, is too large to scale"),
    "a label that is not 0 or 1": (
        "labels.csv",
        ["data.label_column=fault"],
        "label column fault has '2' on line 62 (labels must be 0 or 1)",
    ),
    "too few rows for the window": ("few_rows.csv", [], "the training part has 16 rows, fewer than data.window=32"),
    "a bad file in a folder": ("folder", [], "non-finite value nan on line 72, column a"),
    "a gzip file named .csv": ("gzipped.csv", [], "a gzip-compressed file, not CSV text: decompress it"),
}


@pytest.mark.parametrize("name", list(DATA_MISTAKES))
def test_a_data_mistake_is_one_line_exit_2_and_no_run_directory(
    name: str, data_dir: Path, tmp_path: Path, capsys
) -> None:
    file, extra, fact = DATA_MISTAKES[name]
    run_dir = tmp_path / "run"
    argv = ["agent=autoencoder", "data=array", f"data.path={data_dir / file}", *extra, f"hydra.run.dir={run_dir}"]
    line = refused(rl_train, argv, capsys)
    named = data_dir / "folder" / "b_bad.csv" if file == "folder" else data_dir / file  # the bad file itself
    assert line.startswith(f"rl-train: error: data.path={named}: {fact}"), line
    assert not run_dir.exists()


# ------------------------------------------------------------------------------ a run whose env module is gone
VANISHING = "vanishing_user_envs"  # a user's module: on the path while the run trains, gone when it is evaluated
VANISHING_SOURCE = textwrap.dedent(
    """
    import gymnasium as gym
    gym.register("VanishingPole-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                 max_episode_steps=50)
    """
)


@pytest.fixture(scope="module")
def run_without_its_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained in another process, with the user's module on its PYTHONPATH; this process never had it
    (nor the env's spaces, which a process keeps once it has made an env)."""
    folder = tmp_path_factory.mktemp("vanishing")
    (folder / "package").mkdir()
    (folder / "package" / f"{VANISHING}.py").write_text(VANISHING_SOURCE)
    run_dir = folder / "run"
    overrides = [
        "agent=rainbow",
        "env=gym",
        f"env.id={VANISHING}:VanishingPole-v0",
        "device=cpu",
        "progress=false",
        "threads=1",
        "net.hidden=16",
        "agent.batch_size=8",
        "agent.learning_starts=20",
        "total_steps=40",
        "eval.every=0",
        "eval.episodes=1",
        f"hydra.run.dir={run_dir}",
    ]
    environment = {**os.environ, "PYTHONPATH": str(folder / "package"), "OMP_NUM_THREADS": "1"}
    trained = subprocess.run(
        cli(*overrides), cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert VANISHING not in sys.modules
    return run_dir


def test_rl_eval_of_a_run_whose_env_module_is_not_importable_is_one_line(run_without_its_module: Path, capsys):
    line = refused(rl_eval, [str(run_without_its_module), "episodes=1"], capsys, program="rl-eval")
    assert f"env.id: cannot import {VANISHING!r}" in line and "PYTHONPATH" in line


def test_a_resume_of_a_run_whose_env_module_is_not_importable_is_one_line_and_changes_nothing(
    run_without_its_module: Path, capsys
) -> None:
    saved = {path: path.read_bytes() for path in run_without_its_module.rglob("*") if path.is_file()}
    line = refused(rl_train, [f"resume={run_without_its_module}", "total_steps=60"], capsys)
    assert f"env.id: cannot import {VANISHING!r}" in line
    assert {path: path.read_bytes() for path in run_without_its_module.rglob("*") if path.is_file()} == saved


@pytest.mark.parametrize(
    "argv, fact",
    [
        (["{tmp}"], "is neither a run directory (no .hydra/overrides.yaml) nor a checkpoint directory"),
        (["{tmp}/nowhere"], "nowhere does not exist"),
        (["{run}", "checkpoint=step_999"], "no checkpoint 'step_999' under"),
    ],
    ids=["not a run", "no such directory", "no such checkpoint"],
)
def test_rl_eval_refuses_with_one_line(argv, fact, run_without_its_module: Path, tmp_path: Path, capsys) -> None:
    argv = [a.format(tmp=tmp_path, run=run_without_its_module) for a in argv]
    assert fact in refused(rl_eval, argv, capsys, program="rl-eval")


# ----------------------------------------------------------------------------- nothing heavy for a refusal
NOTHING_HEAVY = textwrap.dedent(
    """
    import json, sys
    from rl_runner.train import main
    results = []
    for argv in json.loads(sys.argv[1]):
        try:
            main(argv)
            code = 0
        except SystemExit as error:
            code = error.code
        results.append([argv[0], code, [m for m in ("torch", "gymnasium", "mujoco") if m in sys.modules]])
    print("RESULTS " + json.dumps(results))
    """
)


def test_help_and_refused_overrides_import_nothing_heavy(tmp_path: Path) -> None:
    """``rl-train --help``, a refused value, a bad choice and an unknown key answer without torch, gymnasium or
    MuJoCo: one fresh process runs the four in turn, each checked after its own."""
    run = f"hydra.run.dir={tmp_path / 'run'}"
    argvs = [["--help"], ["agent.gamma=1.5", run], ["agent=nope", run], ["agent.nokey=1", run]]
    result = subprocess.run(
        [sys.executable, "-c", NOTHING_HEAVY, json.dumps(argvs)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.rsplit("RESULTS ", 1)[1])
    assert results == [["--help", 0, []], ["agent.gamma=1.5", 2, []], ["agent=nope", 2, []], ["agent.nokey=1", 2, []]]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 3 and all(line.startswith("rl-train: error: ") for line in errors), result.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ values that are accepted
def test_an_integral_float_for_an_integer_key_is_accepted(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    # a float of a key that takes floats stays one, wherever it stands among the integers
    rl_train(
        ["--cfg", "job", "env=cartpole", "+env.kwargs.sutton_barto_reward=1.0", "total_steps=2e5", "net.hidden=3.2e1"]
    )
    out = capsys.readouterr().out
    assert "\ntotal_steps: 200000\n" in out and "  hidden: 32\n" in out and "sutton_barto_reward: 1.0\n" in out


def test_an_integral_float_in_a_sweep_value_list_is_accepted(tmp_path: Path, monkeypatch, capsys) -> None:
    """What the sweep hands to Hydra: the values as integers, each one checked (Hydra's launch left out)."""
    handed = []
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(train_module, "_hydra_main", lambda: handed.append(list(sys.argv)))
    rl_train(["-m", "total_steps=2e5,3e5", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert "total_steps=200000,300000" in handed[0] and "seed=0,1" in handed[0]
    assert "--multirun" in handed[0] or "-m" in handed[0]
    line = refused(rl_train, ["-m", "total_steps=2e5,1234.5", f"hydra.sweep.dir={tmp_path / 'bad'}"], capsys)
    assert "total_steps=1234.5" in line and "could not be converted to Integer" in line
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "bad").exists()


def test_a_relative_data_path_is_made_absolute(tmp_path: Path, monkeypatch, capsys) -> None:
    """The run saves data.path as an absolute path, so that rl-eval and a resume from any directory find it."""
    (tmp_path / "readings").mkdir()
    write_rows(tmp_path / "readings" / "series.csv", "a;b", [f"{i};{math.sin(i)}" for i in range(300)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    rl_train(["--cfg", "job", "agent=autoencoder", "data.path=readings/series.csv"])
    assert f"  path: {tmp_path / 'readings' / 'series.csv'}\n" in capsys.readouterr().out
