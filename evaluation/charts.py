"""PNG charts of a replayed file: the reliability diagram and the precision-coverage curve."""

import matplotlib

matplotlib.use("Agg")

from collections.abc import Sequence  # noqa: E402 (matplotlib's backend is chosen before anything draws)
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evaluation import metrics  # noqa: E402
from evaluation.cases import COMBINED, CONFIDENCE_SOURCES, SOURCE_TITLES, ReplayCase  # noqa: E402
from mlops.charts import DPI  # noqa: E402


def reliability_png(cases: Sequence[ReplayCase], path: Path, *, title: str) -> None:
    """Draw accuracy against mean confidence per confidence bin of the combined top-1, with row counts."""
    truths = [case.truth for case in cases]
    confidence, correct = metrics.top1_outcomes(truths, [case.ranked[COMBINED] for case in cases])
    bins = [row for row in metrics.reliability_bins(confidence, correct) if row["rows"]]
    ece = metrics.expected_calibration_error(confidence, correct)

    figure = Figure(figsize=(6, 6), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    width = 1.0 / metrics.CALIBRATION_BINS
    centres = [(row["low"] + row["high"]) / 2 for row in bins]
    axes.bar(centres, [row["accuracy"] for row in bins], width=width * 0.9, label="top-1 accuracy", alpha=0.8)
    axes.plot(
        [row["mean_confidence"] for row in bins],
        [row["accuracy"] for row in bins],
        "o",
        color="black",
        label="(mean confidence, accuracy)",
    )
    axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for centre, row in zip(centres, bins, strict=True):
        axes.text(centre, min(row["accuracy"] + 0.02, 0.97), str(row["rows"]), ha="center", fontsize=7, rotation=90)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("combined top-1 confidence")
    axes.set_ylabel("share of top-1 right")
    axes.set_title(f"{title}: reliability, {metrics.CALIBRATION_BINS} bins (rows above bars), ECE {ece:.3f}")
    axes.legend(loc="upper left", fontsize=8)
    _save(figure, path)


def precision_coverage_png(
    cases: Sequence[ReplayCase], path: Path, *, title: str, tiers: Sequence[tuple[str, float]]
) -> None:
    """Draw top-1 precision against coverage for the lookup, the model and the combined ranking.

    The combined curve marks the coverage at each tier's minimum confidence.
    """
    truths = [case.truth for case in cases]
    figure = Figure(figsize=(7, 5), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    for source in CONFIDENCE_SOURCES:
        confidence, correct = metrics.top1_outcomes(truths, [case.ranked[source] for case in cases])
        answered = confidence > 0
        coverage, precision = metrics.precision_coverage_curve(confidence[answered], correct[answered])
        # Coverage is a share of every evaluated row, so a source that returns candidates for fewer rows
        # ends at a lower coverage.
        axes.plot(coverage * answered.mean(), precision, label=SOURCE_TITLES[source])
        if source == COMBINED:
            _mark_tiers(axes, confidence, correct, tiers)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("coverage (share of evaluated rows answered)")
    axes.set_ylabel("top-1 precision of the answered rows")
    axes.set_title(f"{title}: precision against coverage by top-1 confidence")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    _save(figure, path)


def _mark_tiers(axes, confidence: np.ndarray, correct: np.ndarray, tiers: Sequence[tuple[str, float]]) -> None:
    for name, minimum in tiers:
        answered = confidence >= minimum
        if minimum <= 0 or not answered.any():
            continue
        coverage, precision = answered.mean(), correct[answered].mean()
        axes.plot([coverage], [precision], "o", color="black")
        axes.annotate(
            f"{name} (>= {minimum:g})", (coverage, precision), textcoords="offset points", xytext=(5, -12), fontsize=8
        )


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        FigureCanvasAgg(figure).print_png(handle)
