"""Benchmark of model training: time, peak memory and model size for 10,000, 50,000 and all payments rows.

Each run trains in a child Python process, so the peak resident memory (VmHWM) is that run's
alone. The child reads the first N rows of the shared payments file in file order (10,000 rows
are one business, 50,000 are four, all 186,433 are 13) and builds `TrainingRow`s as
evaluation/replay.py does. It
calls the production `mlops.training.train` with Django set up (config.settings.local), so the
holdout fit, the holdout evaluation, the calibration replay (setting MODEL_HOLDOUT_ANALYSIS) and
the refit on every row all count. It records wall-clock and CPU time (every thread of the
child), the seconds of each training stage, its peak RSS, and the model's categories and
features. It writes the bundle as `mlops.artefacts.package_bundle` does (joblib, compress=3) and
reports the archive's size.

A second child loads that bundle and reports the growth of its RSS (the model's size in memory,
which drives a web worker's RSS) and the time of `predict_records` on 1,000 of the trained rows.

Each size runs RUNS_PER_SIZE times. The section keeps to SECTION_BUDGET_SECONDS: no repeat
starts after it, and a child still running at the budget's end (at least MIN_CHILD_SECONDS after
its start) is stopped and reported as timed out.

Usage: .venv/bin/python -m benchmarks.training_bench [--quick] [--json PATH]
"""

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import measure
from tests.support.stack import REPO, VENV_BIN, StackError, service_env, start_process, stop_process

ALL_ROWS = "all"
SIZES = (10_000, 50_000, ALL_ROWS)
QUICK_SIZE = 500
RUNS_PER_SIZE = 3
PREDICT_ROWS = 1000
PREDICT_RUNS = 3
CHILD_TIMEOUT_SECONDS = 600
MIN_CHILD_SECONDS = 60
# make bench gives this section about 5 minutes (see the module docstring for what happens after).
SECTION_BUDGET_SECONDS = 330
# Targets of the training benchmark: all rows within 60 s and 2 GB of peak memory.
TARGET_SECONDS = 60
TARGET_PEAK_MB = 2048


def run(*, quick: bool = False) -> dict:
    """Train at each size in child processes and return the figures per size.

    With quick, one run of QUICK_SIZE rows. Removes its scratch folder afterwards. Raises
    StackError when a child fails.
    """
    sizes = [QUICK_SIZE] if quick else SIZES
    started = time.monotonic()
    deadline = started + SECTION_BUDGET_SECONDS
    results = {"machine": measure.machine(), "data": str(measure.PAYMENTS), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="training-bench-") as scratch:
        for size in sizes:
            runs = 1 if quick else RUNS_PER_SIZE
            results["sizes"].append(_measure_size(size, runs=runs, scratch=Path(scratch), deadline=deadline))
    results["section_seconds"] = round(time.monotonic() - started, 1)
    return results


def _measure_size(size: int | str, *, runs: int, scratch: Path, deadline: float) -> dict:
    """Run up to `runs` trainings of one size and summarise them. A run that times out ends the size."""
    measured, timed_out, timeout = [], False, CHILD_TIMEOUT_SECONDS
    for index in range(runs):
        if index > 0 and time.monotonic() > deadline:
            break
        timeout = min(CHILD_TIMEOUT_SECONDS, max(MIN_CHILD_SECONDS, deadline - time.monotonic()))
        folder = scratch / f"{size}-{index}"
        folder.mkdir()
        train_arguments = ["--train", str(size), "--out", str(folder)]
        outcome = _run_child(train_arguments, folder=folder, name="train", timeout=timeout)
        if outcome is None:
            timed_out = True
            break
        outcome |= _run_child(["--load", str(folder)], folder=folder, name="load", timeout=CHILD_TIMEOUT_SECONDS) or {}
        measured.append(outcome)

    entry = {
        "size": size,
        "runs_planned": runs,
        "runs": len(measured),
        "timed_out": timed_out,
        "timeout_seconds": round(timeout),
    }
    if not measured:
        return entry
    first = measured[0]
    entry |= {key: first[key] for key in ("rows", "businesses", "categories", "features", "holdout_top1")}
    for key in ("wall_seconds", "cpu_seconds", "peak_rss_mb", "artefact_mb", "model_memory_mb", "predict_1000_ms"):
        values = [run[key] for run in measured if key in run]
        if values:
            entry[key] = measure.summarise(values)
    entry["stage_seconds"] = first["stage_seconds"]
    return entry


def _run_child(arguments: list[str], *, folder: Path, name: str, timeout: float) -> dict | None:
    """Run this module in a child process and return its JSON, or None when it timed out."""
    env = service_env(DJANGO_SETTINGS_MODULE="config.settings.local", VAR_DIR=str(folder / "var"))
    command = [str(VENV_BIN / "python"), "-m", "benchmarks.training_bench", *arguments]
    child = start_process(name, command, env=env, log_dir=folder)
    try:
        code = child.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        # Also reaps the child's own worker processes, which share its process group.
        stop_process(child)
    result = folder / f"{name}.json"
    if code != 0 or not result.is_file():
        log = child.log_path.read_text(errors="replace")[-2000:]
        raise StackError(f"The {name} child ({' '.join(arguments)}) exited with {code}:\n{log}")
    return json.loads(result.read_text())


# The child processes.


def _train_child(size: str, out: Path) -> None:
    """Train on the first `size` rows (or every row) and write train.json and model.joblib to `out`."""
    import django

    django.setup()
    import joblib
    from django.conf import settings

    from evaluation.dataset import RECORD_FIELDS
    from mlops.artefacts import package_bundle
    from mlops.training import TrainingRow, train

    expenses = measure.data_expenses(limit=None if size == ALL_ROWS else int(size))
    rows = [
        TrainingRow(
            record={name: expense.get(name) or "" for name in RECORD_FIELDS},
            category=expense["category"],
            date=measure.parse_date(expense["date"]),
        )
        for expense in expenses
    ]

    marks = [("checks and split", time.monotonic())]
    cpu_start = time.process_time()
    result = train(
        rows,
        min_rows=settings.MODEL_MIN_TRAINING_ROWS,
        holdout_fraction=settings.MODEL_HOLDOUT_FRACTION,
        on_stage=lambda stage: marks.append((stage, time.monotonic())),
    )
    marks.append(("done", time.monotonic()))
    # process_time counts every thread of this process. Worker processes, if any, count as children.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu_start + children.ru_utime + children.ru_stime
    wall = marks[-1][1] - marks[0][1]
    stages = {stage: round(end - start, 2) for (stage, start), (_, end) in zip(marks, marks[1:], strict=False)}

    joblib.dump(result.bundle, out / "model.joblib", compress=3)
    archive = package_bundle(result.bundle, {"version": "bench"})
    _write_json(
        out / "train.json",
        {
            "rows": len(rows),
            "businesses": len({row.record["business_id"] for row in rows}),
            "categories": len(result.bundle["labels"]),
            "features": _feature_count(result.bundle),
            "holdout_top1": result.metrics.get("top1_accuracy"),
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_mb": measure.memory_mb()["peak_rss_mb"],
            "artefact_mb": len(archive) / 2**20,
            "stage_seconds": stages,
        },
    )


def _load_child(folder: Path) -> None:
    """Load the bundle in `folder`, time predictions on PREDICT_ROWS trained rows, write load.json."""
    import django

    django.setup()
    import joblib

    from mlops.inference import predict_records

    train_facts = json.loads((folder / "train.json").read_text())
    expenses = measure.data_expenses(limit=train_facts["rows"])
    step = max(1, len(expenses) // PREDICT_ROWS)
    records = [measure.prediction_body(expense) for expense in expenses[::step][:PREDICT_ROWS]]
    # Import what unpickling the model imports, so the RSS growth below is the model's alone.
    importlib.import_module("sklearn.linear_model")
    importlib.import_module("sklearn.pipeline")

    before = measure.memory_mb()["rss_mb"]
    bundle = joblib.load(folder / "model.joblib")
    after = measure.memory_mb()["rss_mb"]
    timings = []
    for _ in range(PREDICT_RUNS):
        clock = time.monotonic()
        predict_records(bundle, records, top_k=3)
        timings.append((time.monotonic() - clock) * 1000)
    _write_json(
        folder / "load.json",
        {
            "model_memory_mb": after - before,
            "predict_1000_ms": sorted(timings)[len(timings) // 2] * PREDICT_ROWS / len(records),
        },
    )


def _feature_count(bundle: dict) -> int:
    """Return the width of the shared feature matrix (every business model reads some of its columns)."""
    from mlops.features import records_frame

    return int(bundle["features"].transform(records_frame([{}])).shape[1])


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))


# The report.


def report(results: dict) -> str:
    """Return the Markdown section: a table per size, the targets, what limits them, the command."""
    lines = [
        "## Training",
        "",
        "`mlops.training.train` on the first N rows of the payments file, each run in its own process: "
        "holdout fit, holdout evaluation, calibration replay and refit on every row. Median of the runs "
        "(min-max in brackets). Memory is the peak RSS of the training process; the model in memory is "
        "the RSS growth of a fresh process that loads it; the artefact is the packaged model.tar.gz.",
        "",
        "| rows | runs | businesses | categories | features | wall time | CPU time | peak RSS | model in memory "
        "| artefact | predict 1,000 rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["sizes"]:
        lines.append(_size_row(entry))

    lines += ["", *_target_lines(results), ""]
    measured = [entry for entry in results["sizes"] if entry.get("stage_seconds")]
    if measured:
        stages = ", ".join(f"{stage} {seconds:g} s" for stage, seconds in measured[-1]["stage_seconds"].items())
        lines += [f"Wall time per stage of the first {measured[-1]['rows']:,}-row run: {stages}.", ""]
    lines.append(
        "What it costs: each fit is one logistic regression per business (saga, 2 threads), whose cost grows "
        "with each business's rows x categories; the calibration replay runs in Python beside the refit on "
        "every row (docs/models.md)."
    )
    lines += [
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.training_bench --json test-artifacts/bench-training.json`.",
        "",
    ]
    return "\n".join(lines)


def _size_row(entry: dict) -> str:
    runs = f"{entry['runs']} of {entry['runs_planned']}"
    if not entry["runs"]:
        reason = f"timed out after {entry['timeout_seconds']} s" if entry["timed_out"] else "not run"
        size = f"{entry['size']:,}" if isinstance(entry["size"], int) else entry["size"]
        return f"| {size} | {runs} | {reason} |" + " |" * 8

    def cell(key: str, unit: str) -> str:
        return measure.spread(_rounded(entry[key]), unit) if key in entry else "n/a"

    return (
        f"| {entry['rows']:,} | {runs} | {entry['businesses']} | {entry['categories']:,} | {entry['features']:,} "
        f"| {cell('wall_seconds', 's')} | {cell('cpu_seconds', 's')} | {cell('peak_rss_mb', 'MB')} "
        f"| {cell('model_memory_mb', 'MB')} | {cell('artefact_mb', 'MB')} | {cell('predict_1000_ms', 'ms')} |"
    )


def _target_lines(results: dict) -> list[str]:
    every = next((entry for entry in results["sizes"] if entry["size"] == ALL_ROWS), None)
    if every is not None and "wall_seconds" in every:
        wall, peak = every["wall_seconds"]["median"], every["peak_rss_mb"]["median"]
        return [
            f"Targets for all rows: at most {TARGET_SECONDS} s: {_verdict(wall, TARGET_SECONDS, 's')}; "
            f"at most {TARGET_PEAK_MB} MB peak: {_verdict(peak, TARGET_PEAK_MB, 'MB')}."
        ]
    if every is not None:
        return [f"Targets for all rows ({TARGET_SECONDS} s, {TARGET_PEAK_MB} MB): missed, the run timed out."]
    return [f"Targets for all rows ({TARGET_SECONDS} s, {TARGET_PEAK_MB} MB): not measured in this run."]


def _verdict(value: float, target: float, unit: str) -> str:
    return "met" if value <= target else f"missed by {value - target:,.0f} {unit}"


def _rounded(summary: dict) -> dict:
    digits = 0 if summary["median"] >= 100 else 1
    return {key: round(summary[key], digits) for key in ("median", "min", "max")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"One run of {QUICK_SIZE} rows, for a smoke test.")
    parser.add_argument("--json", type=Path, help="Write the figures as JSON to this file too.")
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        _train_child(args.train, args.out)
        return
    if args.load:
        _load_child(args.load)
        return

    results = run(quick=args.quick)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
