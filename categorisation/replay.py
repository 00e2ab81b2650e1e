"""The prediction policy replayed offline over past expenses, in date order.

Training uses it to fit the calibration on the holdout: each holdout expense is predicted from the
lookup of everything before it and the model's ranked categories, then learned, as the live
service would have done. `LookupIndex` mirrors the lookup store's `similar_expenses` query in
memory; the evaluation replay (`evaluation/replay.py`) uses it too.
"""

import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from categorisation import calibration, policy
from lookup.domain import Expense
from lookup.normalisation import is_generic_key, supplier_key


@dataclass(frozen=True)
class ReplayRow:
    """An expense with its true category and the model's ranked categories for it."""

    business_id: str
    expense_id: str
    supplier: str
    amount: Decimal
    date: datetime.date | None
    category: str
    department: str = ""
    ranked: tuple = ()  # the model's [{"category", "confidence"}, ...], best first

    def expense(self, key: str) -> Expense:
        """Return the expense as the lookup store keeps it after its `expense.created` event."""
        return Expense(
            business_id=self.business_id,
            expense_id=self.expense_id,
            version=1,
            supplier=self.supplier,
            supplier_key=key,
            category=self.category,
            amount=self.amount,
            currency="GBP",
            date=self.date,
            department=self.department,
        )


class LookupIndex:
    """A business's learned expenses by supplier key, as the lookup store keeps them.

    `similar` mirrors `lookup.selectors.similar_expenses`: the newest `limit` live expenses of the
    business with that key, newest date first. The SQL store leaves the order of equal dates
    unspecified, so the index breaks ties by expense id, newest first. Expenses must be learned in
    (date, expense_id) order per key, so each key's list stays in that order without sorting.
    """

    def __init__(self, *, limit: int | None = None):
        self.limit = settings.LOOKUP_MAX_MATCHES if limit is None else limit
        self._by_key: dict[tuple[str, str], list[Expense]] = defaultdict(list)

    def learn(self, expense: Expense) -> None:
        """Add an expense, which must not be older than any expense already learned for its key."""
        learned = self._by_key[(expense.business_id, expense.supplier_key)]
        if learned and (expense.date, expense.expense_id) < (learned[-1].date, learned[-1].expense_id):
            raise ValueError(
                f"Expense {expense.expense_id} of {expense.date} is older than {learned[-1].expense_id} "
                f"of {learned[-1].date}; learn expenses in (date, expense_id) order."
            )
        learned.append(expense)

    def similar(self, *, business_id: str, supplier_key: str) -> list[Expense]:
        """Return up to `limit` of the business's expenses with this supplier key, newest first."""
        learned = self._by_key.get((business_id, supplier_key), [])
        return learned[: -self.limit - 1 : -1]


@dataclass(frozen=True)
class ReplayedAnswer:
    row: ReplayRow
    candidates: list  # policy.Candidate, best first, blended (not calibrated)
    group: str
    lookup_matches: int


@dataclass(frozen=True)
class ReplayedSources:
    """The lookup's and the model's candidates for a row, before the policy blends them."""

    row: ReplayRow
    lookup: list  # policy.Candidate
    model: list  # policy.Candidate
    generic: bool
    lookup_matches: int


def replay(
    rows: Iterable[ReplayRow],
    *,
    past: LookupIndex,
    top_k: int = 3,
    learn: bool = True,
    lookup_weights: Callable[[str], float] = lambda business_id: policy.LOOKUP_WEIGHT,
) -> list[ReplayedAnswer]:
    """Predict each row from the past and the model's ranking, then learn it.

    Rows must be in (date, expense_id) order per business; rows without a date are predicted
    without the lookup and not learned.
    """
    return combine_sources(replay_sources(rows, past=past, learn=learn), top_k=top_k, lookup_weights=lookup_weights)


def replay_sources(rows: Iterable[ReplayRow], *, past: LookupIndex, learn: bool = True) -> list[ReplayedSources]:
    """Return each row's lookup and model candidates, learning each row after its prediction.

    They do not depend on the lookup weight, so training computes them once and blends them with
    each weight it tries (combine_sources).
    """
    answers = []
    for row in rows:
        key = supplier_key(row.supplier)
        generic = is_generic_key(key)
        similar = past.similar(business_id=row.business_id, supplier_key=key) if row.date is not None else []
        lookup = (
            policy.lookup_candidates(
                similar=similar, amount=row.amount, date=row.date, generic=generic, department=row.department
            )
            if row.date is not None
            else []
        )
        model = policy.model_candidates(ranked=list(row.ranked), model_version="replay")
        answers.append(
            ReplayedSources(row=row, lookup=lookup, model=model, generic=generic, lookup_matches=len(similar))
        )
        if learn and row.date is not None:
            past.learn(row.expense(key))
    return answers


def combine_sources(
    sources: list[ReplayedSources],
    *,
    top_k: int = 3,
    lookup_weights: Callable[[str], float] = lambda business_id: policy.LOOKUP_WEIGHT,
) -> list[ReplayedAnswer]:
    """Blend each row's sources with its business's lookup weight, as the service would."""
    answers = []
    for source in sources:
        lookup, model, generic = source.lookup, source.model, source.generic
        candidates = policy.combine(
            rule=None,
            lookup=lookup,
            model=model,
            generic=generic,
            top_k=top_k,
            lookup_weight=lookup_weights(source.row.business_id),
        )
        group = (
            calibration.answer_group(top=candidates[0], lookup=lookup, model=model, generic=generic)
            if candidates
            else calibration.ALL
        )
        answers.append(
            ReplayedAnswer(row=source.row, candidates=candidates, group=group, lookup_matches=source.lookup_matches)
        )
    return answers


def calibration_cases(answers: list[ReplayedAnswer]) -> list[calibration.Case]:
    return [
        calibration.Case(
            business_id=answer.row.business_id,
            group=answer.group,
            confidence=answer.candidates[0].confidence,
            correct=answer.candidates[0].category == answer.row.category,
        )
        for answer in answers
        if answer.candidates
    ]
