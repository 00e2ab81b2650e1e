"""The prediction service: queries each source and combines their candidates."""

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings

from categorisation import calibration, policy, resilience
from lookup import selectors
from lookup.domain import Expense
from lookup.normalisation import is_generic_key, supplier_key
from mlops.predictors import get_predictor

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Prediction:
    prediction_id: str
    categories: list[policy.Candidate]
    model_version: str | None
    degraded: list[str]
    tier: str = calibration.ABSTAIN


def predict_expenses(*, expenses: list[dict], top_k: int) -> list[Prediction]:
    """Return one prediction per validated expense, in order.

    The rules, the lookup and the model are asked concurrently, each within its timeout and the
    request's PREDICTION_BUDGET_MS. A source that fails, times out or has an open circuit breaker
    is skipped and named in each prediction's `degraded` list; the others still answer.

    A category the business has archived is never returned: the "rules" source reads the archived
    categories with the rules, a rule that assigns one is skipped, and lookup and model candidates
    with one are dropped before the blend and calibration.
    """
    keys = [supplier_key(expense["supplier"]) for expense in expenses]
    # More model categories than returned, so the blend finds the model's probability for the
    # lookup's category more often.
    model_top_k = max(top_k, policy.MODEL_CANDIDATES)
    batch_extra = (len(expenses) - 1) * settings.PREDICTION_BATCH_ITEM_MS / 1000
    results, failed = resilience.call_sources(
        {
            "rules": lambda: selectors.rules_and_archived_for_businesses(
                {expense["business_id"] for expense in expenses}
            ),
            "lookup": lambda: _similar_expenses(expenses, keys),
            "model": lambda: _model_answer(expenses, model_top_k),
        },
        timeouts={
            "rules": settings.RULES_TIMEOUT_MS / 1000 + batch_extra,
            "lookup": settings.LOOKUP_TIMEOUT_MS / 1000 + batch_extra,
            "model": settings.MODEL_TIMEOUT_MS / 1000 + batch_extra,
        },
        budget=settings.PREDICTION_BUDGET_MS / 1000 + batch_extra,
    )
    # NOTE: when the rules source fails, the archived categories are unknown too, so that degraded
    # prediction is not filtered and may suggest an archived category.
    database = results.get("rules") or selectors.RulesAndArchived(rules={}, archived={})
    similar = results.get("lookup")
    model_answer, model_calibration = results.get("model") or (None, None)
    model_version = model_answer.model_version if model_answer else None
    degraded = sorted(failed)

    predictions = []
    skipped_rules = {}
    for index, expense in enumerate(expenses):
        business_id = expense["business_id"]
        generic = is_generic_key(keys[index])
        archived = database.archived.get(business_id, frozenset())
        rules = database.rules.get(business_id)
        rule, skipped = None, []
        if rules:
            # Matching first builds a rule subject from the expense, and most businesses have no rules.
            rule, skipped = selectors.first_rule_not_archived(rules, expense=expense, archived=archived)
        skipped_rules.update(((rule.pk, business_id), rule) for rule in skipped)
        lookup = _lookup_candidates(expense, similar[index], generic) if similar else []
        model = (
            policy.model_candidates(ranked=model_answer.results[index], model_version=model_version)
            if model_answer
            else []
        )
        lookup = _without_archived(lookup, archived)
        model = _without_archived(model, archived)
        categories = policy.combine(
            rule=policy.rule_candidate(rule_id=rule.pk, category=rule.category) if rule else None,
            lookup=lookup,
            model=model,
            generic=generic,
            top_k=top_k,
            lookup_weight=(
                model_calibration.lookup_weight_for(business_id) if model_calibration else policy.LOOKUP_WEIGHT
            ),
        )
        group = (
            calibration.answer_group(top=categories[0], lookup=lookup, model=model, generic=generic)
            if categories
            else calibration.ALL
        )
        categories, tier = calibration.apply(
            categories, calibration=model_calibration, business_id=business_id, group=group
        )
        predictions.append(
            Prediction(
                prediction_id=str(uuid.uuid4()),
                categories=categories,
                model_version=model_version,
                degraded=degraded,
                tier=tier,
            )
        )
    for (rule_id, business_id), skipped_rule in skipped_rules.items():
        logger.warning(
            "Skipping override rule: its category %r is archived for the business",
            skipped_rule.category,
            extra={"rule_id": rule_id, "business_id": business_id},
        )
    return predictions


def _without_archived(candidates: list[policy.Candidate], archived: frozenset[str]) -> list[policy.Candidate]:
    return [candidate for candidate in candidates if candidate.category not in archived] if archived else candidates


def _model_answer(expenses: list[dict], top_k: int):
    answer = get_predictor().predict([_model_record(expense) for expense in expenses], top_k=top_k)
    return answer, calibration.for_model_version(answer.model_version)


def _similar_expenses(expenses: list[dict], keys: list[str]) -> list[list[Expense]]:
    # One store read for the whole batch, once per distinct business and key.
    pairs = [(expense["business_id"], key) for expense, key in zip(expenses, keys, strict=True)]
    found = {pair: policy.SimilarExpenses(similar) for pair, similar in selectors.similar_expenses_many(pairs).items()}
    return [found[pair] for pair in pairs]


def _lookup_candidates(expense: dict, similar: list[Expense], generic: bool) -> list[policy.Candidate]:
    return policy.lookup_candidates(
        similar=similar,
        amount=expense["amount"],
        date=expense["date"],
        generic=generic,
        department=expense.get("department", ""),
    )


def _model_record(expense: dict) -> dict:
    return {
        "business_id": expense["business_id"],
        "supplier": expense["supplier"],
        "description": expense.get("description", ""),
        "amount": str(expense["amount"]),
        "currency": expense["currency"],
        "payment_method": expense.get("payment_method", ""),
        "merchant_category": expense.get("merchant_category", ""),
        "department": expense.get("department", ""),
    }
