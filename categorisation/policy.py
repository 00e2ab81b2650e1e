"""The combination policy: how rules, the lookup and the model rank categories.

A matching override rule ranks first. Below it, each category's confidence is a weighted blend of
the lookup's confidence for the supplier's leading category and the model's probability:

    confidence = LOOKUP_WEIGHT * lookup + (1 - LOOKUP_WEIGHT) * model

The model reads the supplier too, so the lookup mostly matters for suppliers the model has not
learnt yet. With the weight at 0.5, one past expense (lookup confidence 0.5) ranks its category
first unless the model gives another category at least 0.5 more probability than it gives the
lookup's category. A key that only names a payment processor ("paypal") has a lower weight.
The weights were chosen by `python -m benchmarks.policy_replay`; see docs/quality.md.
"""

import datetime
import math
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from lookup.domain import Expense

RULE_CONFIDENCE = 1.0
# Past expenses a year older than the new one count half as much.
RECENCY_HALF_LIFE_DAYS = 365
# A generic key (payment processor) caps the lookup's confidence at this value.
GENERIC_LOOKUP_CONFIDENCE_CAP = 0.3
# Share of the blended confidence that comes from the lookup, for a supplier key and a generic key.
LOOKUP_WEIGHT = 0.5
GENERIC_LOOKUP_WEIGHT = 0.2
# A past expense of the same department counts this many times as much as one of another
# department, because councils buy many categories from one supplier and the department
# distinguishes them.
SAME_DEPARTMENT_WEIGHT = 10.0
# The service requests at least this many categories from the model, so the blend usually finds the
# model's probability for the lookup's category.
MODEL_CANDIDATES = 10
MAX_EVIDENCE_EXPENSES = 5
CORRECTED_MIN_CONFIDENCE = 0.5
AMOUNT_DISTANCE_SCALE = 0.15


@dataclass
class Candidate:
    category: str
    confidence: float
    source: str  # "rule", "lookup" or "model"
    evidence: dict = field(default_factory=dict)


def rule_candidate(*, rule_id: int, category: str) -> Candidate:
    return Candidate(category=category, confidence=RULE_CONFIDENCE, source="rule", evidence={"rule_id": rule_id})


class SimilarExpenses(list):
    """The past expenses of one business and supplier key, with what each vote reads computed once.

    A batch passes the same list to lookup_candidates for every expense of that supplier.
    """

    @cached_property
    def votes(self) -> list[tuple[int | None, float | None]]:
        """Return each expense's date ordinal and amount scale, None where it has no date or amount."""
        return [
            (
                expense.date.toordinal() if expense.date is not None else None,
                _amount_scale(expense.amount) if expense.amount is not None else None,
            )
            for expense in self
        ]


def lookup_candidates(
    *, similar: list[Expense], amount: Decimal, date: datetime.date, generic: bool, department: str = ""
) -> list[Candidate]:
    """Rank the categories of similar past expenses by weighted agreement.

    Each past expense votes for its category with a weight for recency and amount closeness, so
    amount only breaks ties between categories with similar support. A vote from the same
    non-empty department counts SAME_DEPARTMENT_WEIGHT times as much. Confidence is the category's
    share of the votes, scaled by n / (n + 1) for its n agreeing expenses, so one match gives
    0.5 and nine agreeing matches give 0.9.
    """
    if not similar:
        return []
    weights = defaultdict(float)
    members = defaultdict(list)
    amount_scale = _amount_scale(amount)
    today = date.toordinal()
    votes = similar.votes if isinstance(similar, SimilarExpenses) else SimilarExpenses(similar).votes
    for expense, (ordinal, scale) in zip(similar, votes, strict=True):
        weight = _recency_weight(ordinal, today) * _amount_weight(scale, amount_scale)
        if department and expense.department == department:
            weight *= SAME_DEPARTMENT_WEIGHT
        weights[expense.category] += weight
        members[expense.category].append(expense)

    total = sum(weights.values())
    if total <= 0:
        # Every weight underflowed to zero (dates centuries apart): count the expenses instead.
        weights = {category: float(len(expenses)) for category, expenses in members.items()}
        total = sum(weights.values())
    corrected = _corrected_category(similar)
    candidates = []
    # A corrected category leads; the rest follow by weight.
    ranked = sorted(weights.items(), key=lambda item: (item[0] != corrected, -item[1], item[0]))
    for category, weight in ranked:
        agreeing = len(members[category])
        confidence = (weight / total) * agreeing / (agreeing + 1)
        if category == corrected:
            # A person's correction counts at least as much as one agreeing past expense.
            confidence = max(confidence, CORRECTED_MIN_CONFIDENCE)
        if generic:
            confidence = min(confidence, GENERIC_LOOKUP_CONFIDENCE_CAP)
        candidates.append(
            Candidate(
                category=category,
                confidence=round(confidence, 6),
                source="lookup",
                evidence={
                    "matches": len(similar),
                    "agreeing": agreeing,
                    "generic_supplier": generic,
                    "corrected": category == corrected,
                    "expenses": [
                        {"expense_id": item.expense_id, "date": item.date.isoformat() if item.date else None}
                        for item in members[category][:MAX_EVIDENCE_EXPENSES]
                    ],
                },
            )
        )
    return candidates


def model_candidates(*, ranked: list[dict], model_version: str) -> list[Candidate]:
    return [
        Candidate(
            category=item["category"],
            confidence=item["confidence"],
            source="model",
            evidence={"model_version": model_version},
        )
        for item in ranked
    ]


def combine(
    *,
    rule: Candidate | None,
    lookup: list[Candidate],
    model: list[Candidate],
    generic: bool,
    top_k: int,
    lookup_weight: float = LOOKUP_WEIGHT,
) -> list[Candidate]:
    """Return up to top_k candidates, one per category, best first: the rule, then the blend.

    `lookup_weight` is the lookup's share of the blend for a supplier key; the one tuned for the
    business at training (categorisation.calibration) when there is one.
    """
    ranked = [rule] if rule else []
    seen = {rule.category} if rule else set()
    for candidate in blend(lookup=lookup, model=model, generic=generic, lookup_weight=lookup_weight):
        if len(ranked) == top_k:
            break
        if candidate.category not in seen:
            seen.add(candidate.category)
            ranked.append(candidate)
    return ranked


def blend(
    *, lookup: list[Candidate], model: list[Candidate], generic: bool, lookup_weight: float = LOOKUP_WEIGHT
) -> list[Candidate]:
    """Rank lookup and model candidates by blended confidence, highest first.

    With only one source, its own candidates and confidences are returned. With both, only the
    lookup's leading category gets the lookup's share, so the lookup's minority categories do not
    push the model's runners-up out of the top three. A minority category that the model did not
    return is dropped. Each candidate keeps the source that contributed more to its confidence,
    with that source's evidence.
    """
    if not lookup or not model:
        return lookup or model
    weight = GENERIC_LOOKUP_WEIGHT if generic else lookup_weight
    leader = lookup[0]
    blended = []
    for candidate in model:
        if candidate.category == leader.category:
            blended.append(_blend_leader(leader, candidate, weight))
        else:
            blended.append(with_confidence(candidate, round((1 - weight) * candidate.confidence, 6)))
    if leader.category not in {candidate.category for candidate in model}:
        blended.append(_blend_leader(leader, None, weight))
    # sorted() is stable, so equal confidences keep the model's order. A corrected category ranks
    # first whatever the model predicts, because a person chose it for this supplier.
    return sorted(
        blended,
        key=lambda candidate: (
            not (candidate.category == leader.category and leader.evidence.get("corrected")),
            -candidate.confidence,
        ),
    )


def _blend_leader(leader: Candidate, model: Candidate | None, weight: float) -> Candidate:
    lookup_part = weight * leader.confidence
    model_part = (1 - weight) * model.confidence if model else 0.0
    lookup_led = model is None or lookup_part >= model_part or leader.evidence.get("corrected")
    dominant = leader if lookup_led else model
    return with_confidence(dominant, round(lookup_part + model_part, 6))


def with_confidence(candidate: Candidate, confidence: float) -> Candidate:
    """Return a copy of candidate with another confidence.

    Faster than dataclasses.replace(), which costs more than the rest of a blend step, and a batch
    blends thousands.
    """
    return Candidate(
        category=candidate.category, confidence=confidence, source=candidate.source, evidence=candidate.evidence
    )


def _corrected_category(similar: list[Expense]) -> str | None:
    """Return the category of the latest edited expense, while no later expense has another category.

    An expense with a version above 1 was changed by a person after it was filed, typically to
    correct its category. The correction holds for the supplier's next expenses until an expense
    of the supplier learned after it is filed under another category. "After" is by `learned_at`
    (when the store applied it), or by date where the store has no learned_at.
    """
    edited = [expense for expense in similar if expense.version > 1]
    if not edited:
        return None
    if all(expense.learned_at is not None for expense in similar):

        def order(expense: Expense) -> tuple:
            return (expense.learned_at,)
    else:

        def order(expense: Expense) -> tuple:
            return (expense.date or datetime.date.min, expense.version)

    latest = max(edited, key=order)
    if any(expense.category != latest.category for expense in similar if order(expense) > order(latest)):
        return None
    return latest.category


def _recency_weight(past_ordinal: int | None, now_ordinal: int) -> float:
    if past_ordinal is None:
        return 0.5
    age_days = max(0, now_ordinal - past_ordinal)
    return 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)


def _amount_scale(amount: Decimal) -> float:
    return math.log1p(abs(float(amount)))


def _amount_weight(past_scale: float | None, now_scale: float) -> float:
    """Closeness of two amounts on a log scale, from their _amount_scale values.

    The sign is ignored so refunds match purchases.
    """
    if past_scale is None:
        return 0.5
    distance = abs(past_scale - now_scale)
    # At most a factor of about 2 for amounts a thousand times apart: a tie-breaker, not a vote.
    return 1.0 / (1.0 + AMOUNT_DISTANCE_SCALE * distance)
