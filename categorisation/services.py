"""The prediction service: asks each source and combines their answers."""

import logging
import uuid
from dataclasses import dataclass

from django.db import DatabaseError

from categorisation import policy
from lookup import selectors
from lookup.models import OverrideRule
from lookup.normalisation import is_generic_key, supplier_key
from lookup.stores import LookupStoreError
from mlops.predictors import PredictorUnavailable, get_predictor

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    prediction_id: str
    categories: list[policy.Candidate]
    model_version: str | None
    degraded: list[str]


def predict_expenses(*, expenses: list[dict], top_k: int) -> list[Prediction]:
    """Return one prediction per validated expense, in order.

    A source that fails is skipped and named in each prediction's `degraded` list; the others
    still answer.
    """
    degraded = []
    rules_by_business = _rules_for(expenses, degraded)
    # More model categories than returned, so the blend finds the model's probability for the
    # lookup's category more often.
    model_version, model_results = _model_predictions(expenses, max(top_k, policy.MODEL_CANDIDATES), degraded)

    predictions = []
    for index, expense in enumerate(expenses):
        key = supplier_key(expense["supplier"])
        generic = is_generic_key(key)
        rule = selectors.first_matching_rule(rules_by_business.get(expense["business_id"], []), expense=expense)
        lookup = _lookup_candidates(expense, key, generic, degraded)
        model = (
            policy.model_candidates(ranked=model_results[index], model_version=model_version) if model_results else []
        )
        categories = policy.combine(
            rule=policy.rule_candidate(rule_id=rule.pk, category=rule.category) if rule else None,
            lookup=lookup,
            model=model,
            generic=generic,
            top_k=top_k,
        )
        predictions.append(
            Prediction(
                prediction_id=str(uuid.uuid4()),
                categories=categories,
                model_version=model_version,
                degraded=sorted(set(degraded)),
            )
        )
    return predictions


def _rules_for(expenses: list[dict], degraded: list[str]) -> dict[str, list[OverrideRule]]:
    try:
        return selectors.rules_for_businesses({expense["business_id"] for expense in expenses})
    except DatabaseError:
        logger.exception("Loading override rules failed; answering without them")
        degraded.append("rules")
        return {}


def _lookup_candidates(expense: dict, key: str, generic: bool, degraded: list[str]) -> list[policy.Candidate]:
    if "lookup" in degraded:
        return []
    try:
        similar = selectors.similar_expenses(business_id=expense["business_id"], key=key)
    except LookupStoreError:
        logger.exception("Lookup store failed; answering without it", extra={"business_id": expense["business_id"]})
        degraded.append("lookup")
        return []
    return policy.lookup_candidates(
        similar=similar,
        amount=expense["amount"],
        date=expense["date"],
        generic=generic,
        department=expense.get("department", ""),
    )


def _model_predictions(expenses: list[dict], top_k: int, degraded: list[str]) -> tuple[str | None, list | None]:
    records = [_model_record(expense) for expense in expenses]
    try:
        answer = get_predictor().predict(records, top_k=top_k)
    except PredictorUnavailable as exc:
        logger.warning("Model unavailable; answering without it: %s", exc)
        degraded.append("model")
        return None, None
    return answer.model_version, answer.results


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
