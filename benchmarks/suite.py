"""Run every benchmark section and write docs/benchmarks.md and test-artifacts/benchmarks.json.

`make bench` runs this. Each section starts what it needs on 127.0.0.1 and stops it again, so the
sections run one after another on an otherwise idle machine. Usage:
    .venv/bin/python -m benchmarks.suite [--quick] [--only NAME ...] [--markdown PATH] [--json PATH]
"""

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from benchmarks.measure import REPO, machine

# In running order: the HTTP and events sections first, while nothing else has warmed the caches,
# training last because it loads every core for the longest.
SECTIONS = ("http_bench", "events_bench", "scale_bench", "lookup_bench", "training_bench")
METHOD = Path(__file__).with_name("method.md")
DEFAULT_MARKDOWN = REPO / "docs" / "benchmarks.md"
DEFAULT_JSON = REPO / "test-artifacts" / "benchmarks.json"

HTTP_TARGETS = {
    "p99_at_300_rps_ms": "single prediction p99 at 300 requests/s (at most 25 ms)",
    "peak_rps": "single prediction peak requests/s (at least 500)",
    "batch_expenses_per_second": "batch expenses/s, 1,000 per request (at least 10,000)",
    "worker_rss_mb": "RSS per web worker with the model loaded (at most 250 MB)",
}

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny loads, to check that every section runs.")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="Run only these sections.")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help="Where to write the report.")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="Where to write the results.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    started = time.monotonic()
    results = {"machine_before": machine(), "quick": args.quick, "sections": {}}
    reports = []
    for name in args.only or SECTIONS:
        module = importlib.import_module(f"benchmarks.{name}")
        logger.info("Running %s", name)
        section_started = time.monotonic()
        section = module.run(quick=args.quick)
        seconds = round(time.monotonic() - section_started, 1)
        results["sections"][name] = {"seconds": seconds, "results": section}
        reports.append(module.report(section) + f"\n\nThis section took {seconds:g} s.\n")
        logger.info("%s took %s s", name, seconds)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine_after"] = machine()

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(_document(results, reports, argv if argv is not None else sys.argv[1:]))
    logger.info("Wrote %s and %s in %s s", args.markdown, args.json, results["seconds"])
    return 0


def _document(results: dict, reports: list[str], argv: list[str]) -> str:
    before, after = results["machine_before"], results["machine_after"]
    command = " ".join(["make bench"] if not argv else [".venv/bin/python -m benchmarks.suite", *argv])
    header = [
        "# Benchmarks",
        "",
        "This file is written by `make bench` (`benchmarks/suite.py`); edit `benchmarks/method.md` or a",
        "section's `report` function, not this file.",
        "",
        f"- Command: `{command}`{' (quick mode: tiny loads, figures not comparable)' if results['quick'] else ''}",
        f"- Date: {before['date']}; the whole run took {results['seconds']:g} s.",
        f"- Machine: {before['cores']} cores ({before['cpu']}), {before['memory_gib']:g} GiB of memory, "
        f"{before['system']}, Python {before['python']}.",
        f"- Load average (1, 5, 15 min) before the run: {', '.join(map(str, before['load_average']))}; "
        f"after: {', '.join(map(str, after['load_average']))}.",
        "",
    ]
    method = METHOD.read_text().strip() + "\n" if METHOD.exists() else ""
    summary = _summary(results["sections"])
    sections = "\n\n".join(report.strip() + "\n" for report in reports)
    return "\n".join(header) + "\n" + summary + "\n" + method + "\n" + sections


def _summary(sections: dict) -> str:
    """Return the table of every target with its measured median and verdict."""
    rows = []
    http = sections.get("http_bench", {}).get("results", {})
    for name, target in http.get("targets", {}).items():
        rows.append((HTTP_TARGETS.get(name, name), f"{target['value']:g}", target["text"]))

    events = sections.get("events_bench", {}).get("results", {})
    for store, measured in events.get("stores", {}).items():
        throughput = measured["throughput"]["events_per_second"]["median"]
        freshness = measured["freshness"]["p99_ms"]["median"]
        rows.append(
            (
                f"events applied per second, {store} store (at least 1,000)",
                f"{throughput:g}",
                _verdict(throughput >= 1000, f"missed by {1000 - throughput:g}"),
            )
        )
        rows.append(
            (
                f"freshness p99, {store} store (at most 1,000 ms)",
                f"{freshness:g} ms",
                _verdict(freshness <= 1000, f"missed by {freshness - 1000:g} ms"),
            )
        )

    scale = sections.get("scale_bench", {}).get("results", {})
    comparisons = scale.get("equal_rows_growth", {}).get("history", {})
    for part, ratio in scale.get("growth", {}).get("history", {}).items():
        rows += _scale_rows(part, ratio, comparisons.get(part), scale["history"], flat=scale["flat_ratio"])

    training = sections.get("training_bench", {}).get("results", {})
    sizes = training.get("sizes", [])
    every = next((size for size in sizes if size["size"] == "all"), None)
    if every is not None and "wall_seconds" in every:
        seconds, memory = every["wall_seconds"]["median"], every["peak_rss_mb"]["median"]
        rows.append(
            (
                f"training on all {every['rows']:,} rows: time (at most 60 s)",
                f"{seconds:g} s",
                _verdict(seconds <= 60, f"missed by {seconds - 60:g} s"),
            )
        )
        rows.append(
            (
                f"training on all {every['rows']:,} rows: peak memory (at most 2,048 MB)",
                f"{memory:g} MB",
                _verdict(memory <= 2048, f"missed by {memory - 2048:g} MB"),
            )
        )
    elif every is not None:
        timeout = every["timeout_seconds"]
        rows.append(("training on all rows (at most 60 s)", f"timed out after {timeout} s", "missed"))
    else:
        measured = [size for size in sizes if "wall_seconds" in size]
        if measured:
            # The targets are for all rows: a quick run's size is context, not a verdict.
            largest = max(measured, key=lambda size: size["rows"])
            seconds, memory = largest["wall_seconds"]["median"], largest["peak_rss_mb"]["median"]
            rows.append(
                (
                    f"training on {largest['rows']:,} rows: time, peak memory",
                    f"{seconds:g} s, {memory:g} MB",
                    "for reference",
                )
            )

    lines = ["## Targets", "", "| target | measured (median of the runs) | verdict |", "|---|---:|---|"]
    lines += [f"| {target} | {measured} | {verdict} |" for target, measured, verdict in rows]
    return "\n".join(lines) + "\n"


def _scale_rows(part: str, ratio: float, comparison: dict | None, history: list[dict], *, flat: float) -> list:
    """Return the flatness rows of one scale measure: largest over smallest history, and at equal returned rows.

    A lookup measure whose smallest history returns fewer rows than the largest is judged between
    the sizes that return as many rows. Its ratio from the smallest size stays as a row of its own.
    """
    largest, smallest = history[-1]["rows"], history[0]["rows"]
    if comparison is None or comparison["ratio"] is None:
        return [
            (
                f"scale: {part} at {largest:,} past expenses / at {smallest:,} (flat: at most {flat:g})",
                f"{ratio:g}",
                _verdict(ratio <= flat, "grows with history"),
            )
        ]
    base = history[comparison["baseline"]]["rows"]
    returned, fewer = comparison["rows_returned"], comparison["smallest_rows_returned"]
    return [
        (
            f"scale: {part} at {largest:,} past expenses / at {base:,}, both returning {returned} rows "
            f"(flat: at most {flat:g})",
            f"{comparison['ratio']:g}",
            _verdict(comparison["ratio"] <= flat, "grows with history"),
        ),
        (
            f"scale: {part} at {largest:,} past expenses / at {smallest:,}, which returns {fewer} rows, not {returned}",
            f"{ratio:g}",
            _verdict(ratio <= flat, f"above {flat:g}, from {returned - fewer} more rows returned; see Scale"),
        ),
    ]


def _verdict(met: bool, missed: str) -> str:
    return "met" if met else missed


if __name__ == "__main__":
    sys.exit(main())
