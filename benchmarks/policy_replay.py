"""Replay of the combination policy on the purchase-card data, outside the service.

Splits each business of `shared/data/uk_council_purchase_cards/purchase_cards.csv` by date as
tests/integration/test_real_data.py does: the earlier 80 % is the past, the later 20 % the
holdout. The last 20 % of the past (per business, by date) is the validation split on which the
policy's weights were chosen, so the holdout figures are not tuned on the holdout.

For each split the script trains one model with `mlops.training.train` on the rows before it
(one fit, no inner holdout), gets the model's top categories from
`mlops.inference.predict_records`, builds the lookup from the same earlier rows with
`supplier_key` and `policy.lookup_candidates` (newest 50 per supplier key, as
LOOKUP_MAX_MATCHES), and scores each policy variant on top-1 and top-3. Every variant uses the
department-weighted lookup except the first. No rules exist in this data. The two fits take
about 20 s and 25 s on a 2-core machine, and scoring takes seconds. Usage:
    .venv/bin/python -m benchmarks.policy_replay [--data PATH]
"""

import argparse
import collections
import csv
import datetime
import sys
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

from categorisation import policy
from lookup.domain import Expense
from lookup.normalisation import is_generic_key, supplier_key
from mlops.inference import predict_records
from mlops.training import TrainingRow, train

REPO = Path(__file__).resolve().parents[1]
DATA_PATH = REPO.parent / "shared" / "data" / "uk_council_purchase_cards" / "purchase_cards.csv"
TRAIN_FRACTION = 0.8
LOOKUP_LIMIT = 50
TOP_K = 3
# The fields the service sends to the model (categorisation.services._model_record).
RECORD_FIELDS = ("business_id", "supplier", "description", "amount", "currency", "payment_method")
RECORD_FIELDS += ("merchant_category", "department")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_PATH, help="Purchase-card CSV file.")
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"Data file not found: {args.data}")

    with args.data.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    past, holdout = split_by_business(rows, train_fraction=TRAIN_FRACTION)
    fit, validation = split_by_business(past, train_fraction=TRAIN_FRACTION)

    results = {}
    for name, reference, evaluated in (("validation", fit, validation), ("holdout", past, holdout)):
        cases = build_cases(reference, evaluated)
        results[name] = {variant: score(cases, rank) for variant, rank in VARIANTS.items()}
    print_table(results, rows=len(holdout))


def split_by_business(rows: list[dict], *, train_fraction: float) -> tuple[list[dict], list[dict]]:
    """Split each business's rows by date (expense_id breaks ties): earlier first, later second."""
    by_business = collections.defaultdict(list)
    for row in rows:
        by_business[row["business_id"]].append(row)
    earlier, later = [], []
    for business_rows in by_business.values():
        business_rows = sorted(business_rows, key=lambda row: (row["date"], row["expense_id"]))
        cut = int(len(business_rows) * train_fraction)
        earlier.extend(business_rows[:cut])
        later.extend(business_rows[cut:])
    return earlier, later


def build_cases(reference: list[dict], evaluated: list[dict]) -> list[dict]:
    """Return, per evaluated row, its true category with the lookup's and the model's candidates."""
    ranked = _model_top(reference, evaluated)
    by_key = collections.defaultdict(list)
    for row in reference:
        by_key[(row["business_id"], supplier_key(row["supplier"]))].append(_expense(row))
    for matches in by_key.values():
        # The store's order: newest first. Every imported expense has version 1.
        matches.sort(key=lambda expense: (expense.date, expense.expense_id), reverse=True)

    cases = []
    for row, model_ranked in zip(evaluated, ranked, strict=True):
        key = supplier_key(row["supplier"])
        generic = is_generic_key(key)
        lookup = policy.lookup_candidates(
            similar=by_key.get((row["business_id"], key), [])[:LOOKUP_LIMIT],
            amount=_amount(row["amount"]) or Decimal(0),
            date=datetime.date.fromisoformat(row["date"]),
            generic=generic,
            department=row["department"],
        )
        lookup_without_department = policy.lookup_candidates(
            similar=by_key.get((row["business_id"], key), [])[:LOOKUP_LIMIT],
            amount=_amount(row["amount"]) or Decimal(0),
            date=datetime.date.fromisoformat(row["date"]),
            generic=generic,
        )
        model = policy.model_candidates(ranked=model_ranked, model_version="replay")
        cases.append(
            {
                "truth": row["category"],
                "lookup": lookup,
                "lookup_without_department": lookup_without_department,
                "model": model,
                "generic": generic,
            }
        )
    return cases


def _model_top(reference: list[dict], evaluated: list[dict]) -> list[list[dict]]:
    # The training command reads the store ordered by business and expense id. The same order
    # gives saga the same visiting order, so the fit matches the service's.
    ordered = sorted(reference, key=lambda row: (row["business_id"], row["expense_id"]))
    rows = [
        TrainingRow(record=_record(row), category=row["category"], date=datetime.date.fromisoformat(row["date"]))
        for row in ordered
    ]
    started = time.monotonic()
    result = train(rows, min_rows=2, holdout_fraction=0.0)
    print(f"trained on {len(rows)} rows in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return predict_records(result.bundle, [_record(row) for row in evaluated], top_k=policy.MODEL_CANDIDATES)


def _record(row: dict) -> dict:
    return {name: row[name] for name in RECORD_FIELDS}


def _expense(row: dict) -> Expense:
    return Expense(
        business_id=row["business_id"],
        expense_id=row["expense_id"],
        version=1,
        supplier=row["supplier"],
        supplier_key=supplier_key(row["supplier"]),
        category=row["category"],
        amount=_amount(row["amount"]),
        currency=row["currency"],
        date=datetime.date.fromisoformat(row["date"]),
        department=row["department"],
    )


def _amount(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def score(cases: list[dict], rank: Callable[[dict], list[str]]) -> tuple[float, float]:
    """Return (top-1, top-3) accuracy of a ranking function over the cases."""
    top1 = top3 = 0
    for case in cases:
        names = rank(case)[:TOP_K]
        top1 += bool(names) and names[0] == case["truth"]
        top3 += case["truth"] in names
    return round(top1 / len(cases), 4), round(top3 / len(cases), 4)


def _unique(categories: list[str]) -> list[str]:
    return list(dict.fromkeys(categories))


def _lookup_first(case: dict, *, lookup_field: str = "lookup") -> list[str]:
    """Rank the lookup before the model, except on a generic key, as the previous policy did."""
    lookup = [candidate.category for candidate in case[lookup_field]]
    model = [candidate.category for candidate in case["model"]]
    return _unique(model + lookup if case["generic"] else lookup + model)


def _by_confidence(case: dict) -> list[str]:
    candidates = sorted(case["lookup"] + case["model"], key=lambda candidate: -candidate.confidence)
    return _unique([candidate.category for candidate in candidates])


def _blend_every_category(weight: float) -> Callable[[dict], list[str]]:
    """Blend every lookup category (not only the leader) with the model's probability."""

    def rank(case: dict) -> list[str]:
        scores = collections.defaultdict(float)
        lookup_weight = policy.GENERIC_LOOKUP_WEIGHT if case["generic"] else weight
        for candidate in case["lookup"]:
            scores[candidate.category] += lookup_weight * candidate.confidence
        for candidate in case["model"]:
            scores[candidate.category] += (1 - lookup_weight) * candidate.confidence
        return sorted(scores, key=lambda category: -scores[category])

    return rank


def _gated(min_agreeing: int, max_model_confidence: float) -> Callable[[dict], list[str]]:
    """Lookup's leader first only with enough agreeing history or an unsure model."""

    def rank(case: dict) -> list[str]:
        lookup, model = case["lookup"], case["model"]
        unsure = not model or model[0].confidence < max_model_confidence
        if lookup and not case["generic"] and (lookup[0].evidence["agreeing"] >= min_agreeing or unsure):
            return _unique([lookup[0].category] + [candidate.category for candidate in model])
        return _unique([candidate.category for candidate in model + lookup])

    return rank


def _policy(case: dict) -> list[str]:
    ranked = policy.combine(rule=None, lookup=case["lookup"], model=case["model"], generic=case["generic"], top_k=TOP_K)
    return [candidate.category for candidate in ranked]


VARIANTS = {
    "lookup, then model, without the department weight (previous policy)": lambda case: _lookup_first(
        case, lookup_field="lookup_without_department"
    ),
    "lookup, then model": _lookup_first,
    "model only": lambda case: [candidate.category for candidate in case["model"]],
    "every candidate by confidence": _by_confidence,
    "lookup first with >= 5 agreeing or model top < 0.3": _gated(5, 0.3),
    "blend of every lookup category, weight 0.3": _blend_every_category(0.3),
    "blend of every lookup category, weight 0.5": _blend_every_category(0.5),
    "policy.combine (blend of the lookup's leader)": _policy,
}


def print_table(results: dict, *, rows: int) -> None:
    print(f"Top-1 and top-3 accuracy; {rows} holdout rows.")
    print("| variant | validation top-1 | validation top-3 | holdout top-1 | holdout top-3 |")
    print("|---|---|---|---|---|")
    for variant in VARIANTS:
        validation, holdout = results["validation"][variant], results["holdout"][variant]
        print(f"| {variant} | {validation[0]:.4f} | {validation[1]:.4f} | {holdout[0]:.4f} | {holdout[1]:.4f} |")


if __name__ == "__main__":
    main()
