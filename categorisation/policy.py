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


@dataclass(slots=True)
class Candidate:
    category: str
    confidence: float
    source: str  # "rule", "lookup" or "model"
    evidence: dict = field(default_factory=dict)


def rule_candidate(*, rule_id: int, category: str) -> Candidate:
    return Candidate(category=category, confidence=RULE_CONFIDENCE, source="rule", evidence={"rule_id": rule_id})


class _CategoryVotes:
    """The past expenses of one category among a supplier's, as lookup_candidates reads them."""

    __slots__ = ("category", "votes", "agreeing", "evidence_expenses")

    def __init__(self, category: str):
        self.category = category
        # (date ordinal, amount scale, department) per expense, None where it has no date or amount.
        self.votes: list[tuple[int | None, float | None, str]] = []
        self.agreeing = 0
        # The evidence of the first MAX_EVIDENCE_EXPENSES, shared by every candidate built from them.
        self.evidence_expenses: list[dict] = []


class SimilarExpenses(list):
    """The past expenses of one business and supplier key, with what does not depend on the new expense.

    A batch passes the same list to lookup_candidates for every expense of that supplier, so the
    votes grouped by category, the corrected category and the evidence are built once per
    supplier. The list must not change after lookup_candidates has read it.
    """

    @cached_property
    def by_category(self) -> list[_CategoryVotes]:
        """Return the votes of each category, categories in order of their first expense."""
        groups: dict[str, _CategoryVotes] = {}
        for expense in self:
            group = groups.get(expense.category)
            if group is None:
                group = groups[expense.category] = _CategoryVotes(expense.category)
            group.votes.append(
                (
                    expense.date.toordinal() if expense.date is not None else None,
                    _amount_scale(expense.amount) if expense.amount is not None else None,
                    expense.department,
                )
            )
            group.agreeing += 1
            if len(group.evidence_expenses) < MAX_EVIDENCE_EXPENSES:
                group.evidence_expenses.append(
                    {"expense_id": expense.expense_id, "date": expense.date.isoformat() if expense.date else None}
                )
        return list(groups.values())

    @cached_property
    def corrected(self) -> str | None:
        return _corrected_category(self)


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
    if not isinstance(similar, SimilarExpenses):
        similar = SimilarExpenses(similar)
    groups = similar.by_category
    amount_scale = _amount_scale(amount)
    today = date.toordinal()
    weights = [_category_weight(group.votes, today, amount_scale, department) for group in groups]

    total = sum(weights)
    if total <= 0:
        # Every weight underflowed to zero (dates centuries apart): count the expenses instead.
        weights = [float(group.agreeing) for group in groups]
        total = sum(weights)
    corrected = similar.corrected
    matches = len(similar)
    candidates = []
    # A corrected category leads; the rest follow by weight.
    ranked = sorted(
        zip(groups, weights, strict=True), key=lambda item: (item[0].category != corrected, -item[1], item[0].category)
    )
    for group, weight in ranked:
        agreeing = group.agreeing
        confidence = (weight / total) * agreeing / (agreeing + 1)
        is_corrected = group.category == corrected
        if is_corrected:
            # A person's correction counts at least as much as one agreeing past expense.
            confidence = max(confidence, CORRECTED_MIN_CONFIDENCE)
        if generic:
            confidence = min(confidence, GENERIC_LOOKUP_CONFIDENCE_CAP)
        candidates.append(
            Candidate(
                category=group.category,
                confidence=round(confidence, 6),
                source="lookup",
                evidence={
                    "matches": matches,
                    "agreeing": agreeing,
                    "generic_supplier": generic,
                    "corrected": is_corrected,
                    "expenses": group.evidence_expenses,
                },
            )
        )
    return candidates


def _category_weight(
    votes: list[tuple[int | None, float | None, str]], today: int, amount_scale: float, department: str
) -> float:
    """Return the summed vote weights of one category's past expenses for a new expense.

    One loop with the weights inline, because a batch of 1,000 expenses sums tens of thousands of
    votes and a function call per weight cost more than the arithmetic.
    """
    total = 0.0
    for ordinal, scale, vote_department in votes:
        if ordinal is None:
            recency = 0.5
        else:
            # An expense RECENCY_HALF_LIFE_DAYS older than the new one counts half, and a later one in full.
            age_days = today - ordinal
            recency = 0.5 ** ((age_days if age_days > 0 else 0) / RECENCY_HALF_LIFE_DAYS)
        if scale is None:
            closeness = 0.5
        else:
            # Closeness on a log scale of the absolute amounts, so refunds match purchases. It
            # differs by a factor of about 2 for amounts a thousand times apart, so it only breaks ties.
            closeness = 1.0 / (1.0 + AMOUNT_DISTANCE_SCALE * abs(scale - amount_scale))
        weight = recency * closeness
        if department and vote_department == department:
            weight *= SAME_DEPARTMENT_WEIGHT
        total += weight
    return total


def model_candidates(*, ranked: list[dict], model_version: str) -> list[Candidate]:
    # One evidence dict for the expense's candidates: nothing changes a candidate's evidence.
    evidence = {"model_version": model_version}
    return [
        Candidate(category=item["category"], confidence=item["confidence"], source="model", evidence=evidence)
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
    blending = bool(lookup and model)
    if blending:
        ordered = [item[-2:] for item in _blend_order(lookup, model, generic, lookup_weight)]
    else:
        ordered = [(candidate.confidence, candidate) for candidate in lookup or model]
    for confidence, candidate in ordered:
        if len(ranked) == top_k:
            break
        if candidate.category not in seen:
            seen.add(candidate.category)
            # As blend() returns them, but only the candidates kept are copied.
            ranked.append(with_confidence(candidate, confidence) if blending else candidate)
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
    return [
        with_confidence(candidate, confidence)
        for *_, confidence, candidate in _blend_order(lookup, model, generic, lookup_weight)
    ]


def _blend_order(
    lookup: list[Candidate], model: list[Candidate], generic: bool, lookup_weight: float
) -> list[tuple[bool, float, int, float, Candidate]]:
    """Return blend()'s ranking as sorted tuples that end with (confidence, candidate whose source leads).

    The candidates are not copied yet, because a combination keeps only its top_k of them.
    """
    weight = GENERIC_LOOKUP_WEIGHT if generic else lookup_weight
    model_share = 1 - weight
    leader = lookup[0]
    # A corrected category ranks first whatever the model predicts, because a person chose it for
    # this supplier.
    corrected_leader = leader.category if leader.evidence.get("corrected") else None
    blended = []
    leader_in_model = False
    for position, candidate in enumerate(model):
        if candidate.category == leader.category:
            leader_in_model = True
            confidence, dominant = _blend_leader(leader, candidate, weight)
        else:
            confidence, dominant = round(model_share * candidate.confidence, 6), candidate
        blended.append((dominant.category != corrected_leader, -confidence, position, confidence, dominant))
    if not leader_in_model:
        confidence, dominant = _blend_leader(leader, None, weight)
        blended.append((dominant.category != corrected_leader, -confidence, len(model), confidence, dominant))
    # The position breaks ties, so equal confidences keep the model's order.
    blended.sort()
    return blended


def _blend_leader(leader: Candidate, model: Candidate | None, weight: float) -> tuple[float, Candidate]:
    lookup_part = weight * leader.confidence
    model_part = (1 - weight) * model.confidence if model else 0.0
    lookup_led = model is None or lookup_part >= model_part or leader.evidence.get("corrected")
    return round(lookup_part + model_part, 6), leader if lookup_led else model


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


def _amount_scale(amount: Decimal) -> float:
    return math.log1p(abs(float(amount)))
