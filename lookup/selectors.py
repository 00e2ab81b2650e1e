"""Reads of the lookup app: override rules and similar past expenses."""

import logging
import re
import unicodedata
from functools import lru_cache

from django.conf import settings
from django.db.models import Q

from lookup.domain import Expense
from lookup.models import OverrideRule
from lookup.normalisation import normalise_text, supplier_key
from lookup.stores import get_lookup_store

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")


def rules_for_businesses(business_ids: set[str]) -> dict[str, list[OverrideRule]]:
    """Return each business's enabled rules, global ones included, in the order they run.

    Rules run by descending priority; at equal priority a business's own rule runs before a
    global one. One query for any number of businesses.
    """
    rules = OverrideRule.objects.filter(Q(business_id__in=business_ids) | Q(business_id=""), enabled=True)
    ordered = sorted(rules, key=lambda rule: (-rule.priority, rule.business_id == "", rule.pk))
    return {
        business_id: [rule for rule in ordered if rule.business_id in ("", business_id)] for business_id in business_ids
    }


def first_matching_rule(rules: list[OverrideRule], *, supplier: str) -> OverrideRule | None:
    """Return the first rule that matches the supplier; a rule with an invalid regex is skipped."""
    folded = normalise_text(supplier)
    for rule in rules:
        if _rule_matches(rule, supplier=supplier, folded=folded):
            return rule
    return None


def similar_expenses(*, business_id: str, key: str) -> list[Expense]:
    """Return up to LOOKUP_MAX_MATCHES of the business's live expenses with this supplier key.

    Raises LookupStoreError (or its subclass LookupStoreUnavailable) when the store fails.
    """
    return get_lookup_store().similar_expenses(
        business_id=business_id, supplier_key=key, limit=settings.LOOKUP_MAX_MATCHES
    )


def _rule_matches(rule: OverrideRule, *, supplier: str, folded: str) -> bool:
    value = rule.supplier_value
    if rule.supplier_match == OverrideRule.Match.REGEX:
        pattern = _compile(value)
        if pattern is None:
            logger.warning("Skipping override rule with an invalid regular expression", extra={"rule_id": rule.pk})
            return False
        return bool(pattern.search(regex_subject(supplier)))

    folded_value = normalise_text(value)
    if not folded_value:
        return False
    if rule.supplier_match == OverrideRule.Match.EQUALS:
        return folded == folded_value or supplier_key(supplier) == supplier_key(value)
    if rule.supplier_match == OverrideRule.Match.STARTS_WITH:
        return folded.startswith(folded_value)
    return folded_value in folded


def regex_subject(supplier: str) -> str:
    """Return the text a regular-expression rule is matched against.

    NFKC, case folding, accents removed and whitespace collapsed, but punctuation kept, so a
    pattern can still anchor on "*" or "#".
    """
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", supplier).casefold())
    stripped = "".join(char for char in folded if not unicodedata.combining(char))
    return _WHITESPACE.sub(" ", stripped).strip()


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return None
