"""Date-ordered replay of labelled expense files through the production categorisation policy.

Each file is replayed as its businesses lived it. In (date, expense_id) order, every expense is
first predicted and then learned, as its `expense.created` event would add it to the lookup
store, so the lookup only ever contains earlier expenses. The model is trained once per file on
the earliest TRAIN_FRACTION of each business's rows and is fixed during the replay, and only
the later rows are scored. The figures, charts and a JSON record go to docs/quality.md,
docs/images/ and test-artifacts/evaluation.json. Usage:
    .venv/bin/python -m evaluation.replay [--data PATH ...] [--limit-per-business N]
"""

import argparse
import collections
import dataclasses
import datetime
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import django
from django.conf import settings

from categorisation import calibration, policy
from categorisation.replay import LookupIndex
from evaluation import cases as sources
from evaluation.baselines import MostFrequentCategory, Ranked, SupplierTextBaseline
from evaluation.cases import ReplayCase
from evaluation.dataset import TRAIN_FRACTION, ReplayRow, read_rows
from evaluation.metrics import TOP_K
from lookup.normalisation import is_generic_key
from mlops.inference import predict_records
from mlops.training import TrainingRow, train

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
DEFAULT_DATA = (
    DATA_DIR / "uk_council_purchase_cards" / "purchase_cards.csv",
    DATA_DIR / "uk_council_payments" / "payments.csv",
)
# Confidence tiers of the lookup's and the model's own top-1, highest first, for comparison. The
# combined answer gets the tier the service gives it (categorisation.calibration).
DEFAULT_TIERS = (("auto-apply", 0.9), ("suggest", 0.5), ("abstain", 0.0))
# A wrong answer in the auto-apply tier is saved as suggested and corrected by a person later:
# the lookup learns it as an update (version 2), which the policy treats as a correction.
CORRECTED_VERSION = 2
LEARNED_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
# The maximum, summed over businesses, of a business's training rows times its category names. Each
# business's model costs its rows times its categories (mlops.business_models). Both shared files
# fit within it whole (the payments file's training part costs 16,306,514); a larger file
# trains on each business's latest rows only.
MODEL_TRAINING_BUDGET = 40_000_000
# Rows per predict_records call: the model's probability matrix is rows x labels floats.
PREDICT_BATCH_ROWS = 2000
MODEL_VERSION = "replay"

logger = logging.getLogger(__name__)


def replay_rows(
    rows: Sequence[ReplayRow],
    *,
    model_ranked: dict[str, list[dict]],
    text_ranked: dict[str, Ranked],
    fitted: calibration.Calibration | None = None,
) -> list[ReplayCase]:
    """Predict then learn each row in order, and return a case for each evaluated row.

    `rows` must be in (date, expense_id) order. `model_ranked` and `text_ranked` map each
    evaluated row's expense_id to the fixed model's and the text baseline's ranking. `fitted` is
    the model's calibration. A wrong auto-applied answer is learned as a correction.
    """
    index = LookupIndex()
    most_frequent = MostFrequentCategory()
    occurrences: collections.Counter = collections.Counter()
    cases = []
    for sequence, row in enumerate(rows):
        pair = (row.business_id, row.supplier_key)
        occurrences[pair] += 1
        # The store stamps each expense with the time it learned it; the replay's clock counts rows.
        learned_at = LEARNED_EPOCH + datetime.timedelta(seconds=sequence)
        expense = dataclasses.replace(row.expense(), learned_at=learned_at)
        if row.evaluated:
            ranked, tier = predict_row(row, index=index, model_ranked=model_ranked[row.expense_id], fitted=fitted)
            ranked[sources.MOST_FREQUENT] = most_frequent.rank(row.business_id, top_k=TOP_K)
            ranked[sources.SUPPLIER_TEXT] = text_ranked[row.expense_id]
            case = ReplayCase(
                business_id=row.business_id,
                expense_id=row.expense_id,
                supplier_key=row.supplier_key,
                truth=row.category,
                occurrence=occurrences[pair],
                ranked=ranked,
                tier=tier,
            )
            cases.append(case)
            if tier == calibration.AUTO_APPLY and not case.top1_correct(sources.COMBINED):
                expense = dataclasses.replace(expense, version=CORRECTED_VERSION)
        index.learn(expense)
        most_frequent.learn(row.business_id, row.category)
    return cases


def predict_row(
    row: ReplayRow, *, index: LookupIndex, model_ranked: list[dict], fitted: calibration.Calibration | None = None
) -> tuple[dict[str, Ranked], str]:
    """Return each policy source's ranking for one expense and the combined answer's tier.

    The inputs and steps are the prediction service's: combine, then calibrate.
    """
    generic = is_generic_key(row.supplier_key)
    lookup = policy.lookup_candidates(
        similar=index.similar(business_id=row.business_id, supplier_key=row.supplier_key),
        amount=row.amount,
        date=row.date,
        generic=generic,
        department=row.department,
    )
    model = policy.model_candidates(ranked=model_ranked, model_version=MODEL_VERSION)
    # The data has no override rules, so the rule source returns no candidate.
    weight = fitted.lookup_weight_for(row.business_id) if fitted else policy.LOOKUP_WEIGHT
    combined = policy.combine(rule=None, lookup=lookup, model=model, generic=generic, top_k=TOP_K, lookup_weight=weight)
    group = (
        calibration.answer_group(top=combined[0], lookup=lookup, model=model, generic=generic)
        if combined
        else calibration.ALL
    )
    combined, tier = calibration.apply(combined, calibration=fitted, business_id=row.business_id, group=group)
    ranked = {
        sources.RULE: [],
        sources.LOOKUP: _pairs(lookup),
        sources.MODEL: _pairs(model),
        sources.COMBINED: _pairs(combined),
    }
    return ranked, tier


def confidence_tiers() -> tuple[tuple[tuple[str, float], ...], str]:
    """Return the confidence tiers, highest first, and where they come from.

    categorisation.policy.TIERS is used when it exists: a mapping of tier name to minimum
    confidence, or a sequence of (name, minimum) pairs. Otherwise DEFAULT_TIERS.
    """
    defined = getattr(policy, "TIERS", None)
    if defined is None:
        return DEFAULT_TIERS, "evaluation.replay.DEFAULT_TIERS (the policy defines no tiers)"
    pairs = defined.items() if isinstance(defined, dict) else defined
    try:
        tiers = tuple(sorted(((str(name), float(minimum)) for name, minimum in pairs), key=lambda tier: -tier[1]))
    except (TypeError, ValueError):
        raise ValueError(
            f"categorisation.policy.TIERS is {defined!r}; expected a mapping of tier name to minimum confidence "
            "or a sequence of (name, minimum) pairs."
        ) from None
    if tiers[-1][1] > 0:
        tiers += (("below every tier", 0.0),)
    return tiers, "categorisation.policy.TIERS"


def train_model(rows: Sequence[ReplayRow]) -> tuple[dict, dict, calibration.Calibration | None]:
    """Train the model on each business's training part with mlops.training.train.

    Returns the bundle, facts about the fit, and the calibration that training fitted on its own
    holdout (the latest MODEL_HOLDOUT_FRACTION of each business's training rows), as in production.

    Each business contributes at most its latest `model_row_cap` training rows. The rows go in
    (business_id, expense_id) order, the order in which the train_model command reads the store.
    """
    by_business = collections.defaultdict(list)
    for row in rows:
        if not row.evaluated:
            by_business[row.business_id].append(row)
    cap = model_row_cap(list(by_business.values()), budget=MODEL_TRAINING_BUDGET)
    kept = [row for business_rows in by_business.values() for row in _latest(business_rows, cap)]
    kept.sort(key=lambda row: (row.business_id, row.expense_id))
    training = [TrainingRow(record=row.record, category=row.category, date=row.date) for row in kept]

    result = train(training, min_rows=2, holdout_fraction=settings.MODEL_HOLDOUT_FRACTION)
    fitted = result.metrics.get("calibration")
    facts = {
        "training_rows": len(training),
        "training_rows_available": sum(len(business_rows) for business_rows in by_business.values()),
        "max_rows_per_business": cap,
        "categories": result.metrics["categories"],
        "training_budget": MODEL_TRAINING_BUDGET,
        "holdout_fraction": settings.MODEL_HOLDOUT_FRACTION,
        "auto_apply_threshold": fitted["auto_threshold"] if fitted else None,
        "business_auto_apply_thresholds": fitted["business_auto_thresholds"] if fitted else {},
        "lookup_weight": fitted["lookup_weight"] if fitted else policy.LOOKUP_WEIGHT,
        "business_lookup_weights": fitted["business_lookup_weights"] if fitted else {},
    }
    return result.bundle, facts, calibration.Calibration.from_json(fitted) if fitted else None


def model_row_cap(groups: Sequence[Sequence[ReplayRow]], *, budget: int) -> int:
    """Return the largest per-group row cap whose cost fits the budget.

    Each group keeps its latest `cap` rows and costs its kept rows times their distinct categories,
    as one business's model does. The cost grows with the cap, so a binary search finds the cap.
    The cap is at least 1, so a tiny budget still trains on one row per group.
    """

    def cost(cap: int) -> int:
        total = 0
        for group in groups:
            kept = [row.category for row in _latest(group, cap)]
            total += len(kept) * len(set(kept))
        return total

    low, high = 1, max((len(group) for group in groups), default=1)
    if cost(high) <= budget:
        return high
    while low < high:
        middle = (low + high + 1) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def predict_model(bundle: dict, rows: Sequence[ReplayRow]) -> dict[str, list[dict]]:
    """Return the model's top MODEL_CANDIDATES categories for each evaluated row, by expense_id."""
    evaluated = [row for row in rows if row.evaluated]
    ranked = {}
    for start in range(0, len(evaluated), PREDICT_BATCH_ROWS):
        batch = evaluated[start : start + PREDICT_BATCH_ROWS]
        answers = predict_records(bundle, [row.record for row in batch], top_k=policy.MODEL_CANDIDATES)
        ranked.update((row.expense_id, answer) for row, answer in zip(batch, answers, strict=True))
    return ranked


def rank_supplier_text(rows: Sequence[ReplayRow]) -> dict[str, Ranked]:
    """Train the supplier-text baseline on the training part and return its ranking of each evaluated row."""
    training = [row for row in rows if not row.evaluated]
    evaluated = [row for row in rows if row.evaluated]
    baseline = SupplierTextBaseline()
    baseline.fit(
        business_ids=[row.business_id for row in training],
        suppliers=[row.supplier for row in training],
        categories=[row.category for row in training],
    )
    ranked = baseline.rank([row.business_id for row in evaluated], [row.supplier for row in evaluated], top_k=TOP_K)
    return {row.expense_id: answer for row, answer in zip(evaluated, ranked, strict=True)}


def replay_file(path: Path, *, limit_per_business: int | None = None) -> tuple[dict, list[ReplayCase]]:
    """Replay one file and return its facts and phase timings, with the evaluated cases.

    Each phase gets its wall-clock seconds and the CPU seconds of this process (every thread), so
    a run on a machine shared with other jobs still shows what the replay itself cost.
    """
    timings, cpu_timings = {}, {}
    clock, cpu_clock = time.monotonic(), time.process_time()

    def lap(phase: str) -> None:
        nonlocal clock, cpu_clock
        now, cpu_now = time.monotonic(), time.process_time()
        timings[phase], cpu_timings[phase] = round(now - clock, 1), round(cpu_now - cpu_clock, 1)
        clock, cpu_clock = now, cpu_now
        logger.info("%s: %s took %.1f s (%.1f s of CPU)", path.name, phase, timings[phase], cpu_timings[phase])

    rows = read_rows(path, limit_per_business=limit_per_business)
    lap("read")
    bundle, model_facts, fitted = train_model(rows)
    lap("model training")
    model_ranked = predict_model(bundle, rows)
    lap("model prediction")
    text_ranked = rank_supplier_text(rows)
    lap("text baseline")
    cases = replay_rows(rows, model_ranked=model_ranked, text_ranked=text_ranked, fitted=fitted)
    lap("replay")

    facts = {
        "file": path.name,
        "rows": len(rows),
        "evaluated_rows": len(cases),
        "businesses": len({row.business_id for row in rows}),
        "first_date": min(row.date for row in rows).isoformat(),
        "last_date": max(row.date for row in rows).isoformat(),
        "train_fraction": TRAIN_FRACTION,
        "model": model_facts,
        "timings_seconds": timings,
        "cpu_seconds": cpu_timings,
    }
    return facts, cases


def _latest(rows: Sequence, count: int) -> Sequence:
    return rows[max(0, len(rows) - count) :]


def _pairs(candidates: list[policy.Candidate]) -> Ranked:
    return [(candidate.category, candidate.confidence) for candidate in candidates]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="Labelled CSV file to replay; repeat for several (default: the purchase-card and payments files).",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "quality.md", help="Markdown report to write.")
    parser.add_argument("--images", type=Path, default=REPO / "docs" / "images", help="Folder for the PNG charts.")
    parser.add_argument(
        "--json", type=Path, default=REPO / "test-artifacts" / "evaluation.json", help="JSON record of every figure."
    )
    parser.add_argument(
        "--limit-per-business",
        type=_positive_int,
        help="Replay only each business's earliest N rows, for a quick run (default: every row).",
    )
    args = parser.parse_args(argv)
    paths = args.data or list(DEFAULT_DATA)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"data file not found: {', '.join(missing)}")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    _setup_django()
    # Imported here because the report draws with matplotlib, which a library caller may not need.
    from evaluation.report import write_outputs

    started = (time.monotonic(), time.process_time())
    tiers, tier_source = confidence_tiers()
    files = []
    for path in paths:
        facts, cases = replay_file(path, limit_per_business=args.limit_per_business)
        files.append((facts, cases))
    run = {
        "measured_on": datetime.date.today().isoformat(),
        "limit_per_business": args.limit_per_business,
        "tiers": [{"tier": name, "min_confidence": minimum} for name, minimum in tiers],
        "tier_source": tier_source,
    }
    record = write_outputs(
        run, files, tiers=tiers, out=args.out, images=args.images, json_path=args.json, started=started
    )
    logger.info(
        "Wrote %s, %s and the charts; the run took %.0f s (%.0f s of CPU)",
        args.out,
        args.json,
        record["total_seconds"],
        record["total_cpu_seconds"],
    )
    return 0


def _setup_django() -> None:
    # LookupIndex reads LOOKUP_MAX_MATCHES from the Django settings; the replay opens no database.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django.setup()


def _positive_int(text: str) -> int:
    expected = "expected a whole number of rows, 1 or more"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {expected}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: {expected}")
    return value


if __name__ == "__main__":
    sys.exit(main())
