"""The combination policy: how rules, the lookup and the model rank categories.

First policy: a matching override rule wins; then the categories the business gave to the same
supplier before, by weighted agreement; then the model's categories. A lookup on a key that only
names a payment processor ("paypal") is weak evidence, so there the model ranks first.
"""

import datetime
import math
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from lookup.domain import Expense

RULE_CONFIDENCE = 1.0
# Past expenses a year older than the new one count half as much.
RECENCY_HALF_LIFE_DAYS = 365
# A generic key (payment processor) caps the lookup's confidence at this value.
GENERIC_LOOKUP_CONFIDENCE_CAP = 0.3
MAX_EVIDENCE_EXPENSES = 5
AMOUNT_DISTANCE_SCALE = 0.15


@dataclass
class Candidate:
    category: str
    confidence: float
    source: str  # "rule", "lookup" or "model"
    evidence: dict = field(default_factory=dict)


def rule_candidate(*, rule_id: int, category: str) -> Candidate:
    return Candidate(category=category, confidence=RULE_CONFIDENCE, source="rule", evidence={"rule_id": rule_id})


def lookup_candidates(
    *, similar: list[Expense], amount: Decimal, date: datetime.date, generic: bool
) -> list[Candidate]:
    """Rank the categories of similar past expenses by weighted agreement.

    Each past expense votes for its category with a weight for recency and amount closeness, so
    amount only breaks ties between categories with similar support. Confidence is the category's
    share of the votes, scaled by n / (n + 1) for its n agreeing expenses, so one match gives
    0.5 and nine agreeing matches give 0.9.
    """
    if not similar:
        return []
    weights = defaultdict(float)
    members = defaultdict(list)
    for expense in similar:
        weight = _recency_weight(expense.date, date) * _amount_weight(expense.amount, amount)
        weights[expense.category] += weight
        members[expense.category].append(expense)

    total = sum(weights.values())
    candidates = []
    for category, weight in sorted(weights.items(), key=lambda item: (-item[1], item[0])):
        agreeing = len(members[category])
        confidence = (weight / total) * agreeing / (agreeing + 1)
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
    *, rule: Candidate | None, lookup: list[Candidate], model: list[Candidate], generic: bool, top_k: int
) -> list[Candidate]:
    """Return up to top_k candidates, one per category, in the policy's order."""
    ordered = [rule] if rule else []
    ordered += (model + lookup) if generic else (lookup + model)
    seen = set()
    ranked = []
    for candidate in ordered:
        if candidate.category in seen:
            continue
        seen.add(candidate.category)
        ranked.append(candidate)
        if len(ranked) == top_k:
            break
    return ranked


def _recency_weight(past: datetime.date | None, now: datetime.date) -> float:
    if past is None:
        return 0.5
    age_days = max(0, (now - past).days)
    return 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)


def _amount_weight(past: Decimal | None, now: Decimal) -> float:
    """Closeness of two amounts on a log scale; the sign is ignored so refunds match purchases."""
    if past is None:
        return 0.5
    distance = abs(math.log1p(abs(float(past))) - math.log1p(abs(float(now))))
    # At most a factor of about 2 for amounts a thousand times apart: a tie-breaker, not a vote.
    return 1.0 / (1.0 + AMOUNT_DISTANCE_SCALE * distance)
