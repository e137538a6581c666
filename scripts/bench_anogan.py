"""AnoGAN on SKAB with the benchmark's protocol, against scikit-learn's IsolationForest on the same windows.

For each fault file (valve1, valve2, other: 34 files): train ``rl-train agent=anogan data=skab`` on its first
400 rows (320 train, 80 validate), score the windows that end after row 400 with latent search (AnoGAN) and
with the encoder (f-AnoGAN) from the same checkpoint, and fit an IsolationForest (200 trees) on the same
training windows (flattened). Reports the mean per-file ROC-AUC, the mean F1 at each detector's threshold
(the 99th percentile of its normal validation scores; no test label is read) and scoring speed.

    python scripts/bench_anogan.py --jobs 2                       # every fault file, 2 runs at a time
    python scripts/bench_anogan.py --files valve1/0.csv other/9.csv agent.gan_steps=1000
    python scripts/bench_anogan.py --synthetic                    # the built-in waveform source, 3 seeds

Extra arguments are rl-train overrides for every run. Results go to ``--out`` (JSON) and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_runs import train  # noqa: E402

FAULT_FOLDERS = ("valve1", "valve2", "other")


def skab_dir() -> Path:
    return Path(os.environ.get("RL_RUNNER_SKAB", REPO_ROOT.parent / "shared" / "data" / "skab"))


def score_run(run_dir: Path, overrides: list[str]) -> dict:
    """Train one run, then score its test windows both ways and with an IsolationForest."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from sklearn.ensemble import IsolationForest

    from rl_runner import detection
    from rl_runner.checkpoint import latest_checkpoint
    from rl_runner.choices import Scoring
    from rl_runner.config import run_config
    from rl_runner.runners.dataset_scoring import restore
    from rl_runner.runners.detection_report import normal_mask

    torch.set_num_threads(1)
    record = run_dir / "run.json"
    if not (record.is_file() and json.loads(record.read_text())["status"] == "finished"):  # else reuse the run
        train(run_dir, overrides)
    cfg = run_config(run_dir, [])
    agent, data, _ = restore(cfg, latest_checkpoint(run_dir / "checkpoints"), torch.device("cpu"))
    normal_val = data.val.select(normal_mask(data.val))
    labels = data.test.labels
    result = {"run": str(run_dir), "test_windows": len(data.test), "anomalous": int(labels.sum())}

    def measure(name: str, score) -> None:  # noqa: ANN001 (windows -> scores)
        import time

        started = time.perf_counter()
        scores = score(data.test.values)
        seconds = time.perf_counter() - started
        threshold = None  # other/2.csv: every validation window is anomalous
        if len(normal_val):
            threshold = detection.threshold_at(score(normal_val.values), float(cfg.agent.threshold_percentile))
        if detection.both_classes(labels):
            metrics = detection.detection_metrics(labels, scores, threshold)
            result[name] = {key: metrics[key] for key in ("roc_auc", "pr_auc", "f1") if key in metrics}
        else:
            result[name] = {}
        result[name]["windows_per_second"] = len(scores) / seconds

    for scoring in (Scoring.latent_search, Scoring.encoder):
        measure(scoring.value, lambda values, s=scoring: agent.score(torch.as_tensor(values), s).numpy())
    flat = data.train.values.reshape(len(data.train), -1)
    forest = IsolationForest(n_estimators=200, random_state=0).fit(flat)
    measure("iforest", lambda values: -forest.score_samples(values.reshape(len(values), -1)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="*", help="fault files relative to the SKAB folder (default: all 34)")
    parser.add_argument("--synthetic", action="store_true", help="the waveform source with seeds 0, 1, 2 instead")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=REPO_ROOT / "outputs" / "bench_anogan")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench_anogan.json")
    args, overrides = parser.parse_known_args()
    if args.synthetic:
        jobs = {f"synthetic_seed{seed}": ["agent=anogan", f"seed={seed}"] for seed in range(3)}
    else:
        root = skab_dir()
        if not root.is_dir():
            sys.exit(f"no SKAB data at {root}: set RL_RUNNER_SKAB")
        files = args.files or [
            str(path.relative_to(root))
            for folder in FAULT_FOLDERS
            for path in sorted((root / folder).glob("*.csv"), key=lambda p: int(p.stem))
        ]
        jobs = {name: ["agent=anogan", "data=skab", f"data.path={root / name}"] for name in files}
    results = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        # the run's own final evaluation scores with the encoder (one pass): both scorings are measured here
        cheap = ["eval.every=0", "agent.scoring=encoder"]
        futures = {
            name: pool.submit(score_run, args.runs / name.replace("/", "_"), [*job, *cheap, *overrides])
            for name, job in jobs.items()
        }
        for name, future in futures.items():
            results[name] = future.result()
            row = results[name]
            shown = ", ".join(
                f"{d} AUC {row[d].get('roc_auc', float('nan')):.3f}" for d in ("latent_search", "encoder", "iforest")
            )
            print(f"{name}: {shown}", flush=True)
    summary = summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"overrides": overrides, "summary": summary, "files": results}, indent=2))
    print(table(summary, len(results)))


def summarise(results: dict) -> dict:
    summary = {}
    for detector in ("latent_search", "encoder", "iforest"):
        rows = [row[detector] for row in results.values() if "roc_auc" in row[detector]]
        summary[detector] = {
            "files": len(rows),
            "mean_roc_auc": statistics.mean(row["roc_auc"] for row in rows),
            "mean_f1": statistics.mean(row["f1"] for row in rows if "f1" in row),
            "files_with_f1": sum("f1" in row for row in rows),
            "mean_pr_auc": statistics.mean(row["pr_auc"] for row in rows),
            "windows_per_second": statistics.median(row[detector]["windows_per_second"] for row in results.values()),
        }
    return summary


def table(summary: dict, files: int) -> str:
    lines = [
        f"| detector ({files} files) | mean ROC-AUC | mean F1 at threshold (files) | mean PR-AUC "
        "| windows/s (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for detector, row in summary.items():
        lines.append(
            f"| {detector} | {row['mean_roc_auc']:.3f} | {row['mean_f1']:.3f} ({row['files_with_f1']}) | "
            f"{row['mean_pr_auc']:.3f} | {row['windows_per_second']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
