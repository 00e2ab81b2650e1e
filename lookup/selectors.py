"""Reads of the lookup app: override rules and similar past expenses."""

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.db.models.signals import post_delete, post_save

from config.process_cache import ProcessCache
from lookup.domain import Expense
from lookup.models import ArchivedCategory, OverrideRule
from lookup.normalisation import normalise_text
from lookup.rules import InvalidRuleError, RuleSubject, compile_rule_pattern, regex_subject, rule_matches
from lookup.stores import get_lookup_store

__all__ = (
    "RulePreview",
    "RulesAndArchived",
    "archived_categories_for_businesses",
    "clear_rules_cache",
    "conflicting_rules",
    "first_matching_rule",
    "first_rule_not_archived",
    "preview_rule",
    "regex_subject",
    "rules_and_archived_for_businesses",
    "rules_for_businesses",
    "similar_expenses",
    "similar_expenses_many",
)

logger = logging.getLogger(__name__)

# The maximum number of businesses whose rules one process caches. Past it, the cache starts again empty.
RULES_CACHE_MAX_BUSINESSES = 10_000


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


def archived_categories_for_businesses(business_ids: set[str]) -> dict[str, frozenset[str]]:
    """Return each business's archived categories, an empty set for a business with none. One query."""
    archived: dict[str, set[str]] = {business_id: set() for business_id in business_ids}
    rows = ArchivedCategory.objects.filter(business_id__in=business_ids).values_list("business_id", "category")
    for business_id, category in rows:
        archived[business_id].add(category)
    return {business_id: frozenset(categories) for business_id, categories in archived.items()}


@dataclass(frozen=True)
class RulesAndArchived:
    """The rules and archived categories of a request's businesses, read in one prediction source call."""

    rules: dict[str, list[OverrideRule]]
    archived: dict[str, frozenset[str]]


def rules_and_archived_for_businesses(business_ids: set[str]) -> RulesAndArchived:
    """Return each business's enabled rules and archived categories.

    Two queries for the businesses this process has not read within RULES_CACHE_SECONDS, none for
    the others. Saving or deleting a rule or an archived category empties this process's cache.
    """
    if settings.RULES_CACHE_SECONDS <= 0:
        return _read_rules_and_archived(business_ids)
    now = time.monotonic()
    generation, cached = _cache.lookup(business_ids, now=now)
    missing = {business_id for business_id in business_ids if business_id not in cached}
    if not missing:
        return _from_entries(cached)
    fresh = _read_rules_and_archived(missing)
    read = {business_id: (fresh.rules[business_id], fresh.archived[business_id]) for business_id in missing}
    _cache.put(
        read,
        expires_at=now + settings.RULES_CACHE_SECONDS,
        generation=generation,
        max_entries=RULES_CACHE_MAX_BUSINESSES,
    )
    return _from_entries(cached | read)


def clear_rules_cache(**_signal_arguments) -> None:
    """Empty this process's cache of rules and archived categories (a signal receiver too)."""
    _cache.clear()


def connect_cache_signals() -> None:
    """Empty the rules cache whenever a rule or an archived category is saved or deleted."""
    for model in (OverrideRule, ArchivedCategory):
        post_save.connect(clear_rules_cache, sender=model, dispatch_uid=f"clear-rules-cache-save-{model.__name__}")
        post_delete.connect(clear_rules_cache, sender=model, dispatch_uid=f"clear-rules-cache-delete-{model.__name__}")


def _read_rules_and_archived(business_ids: set[str]) -> RulesAndArchived:
    return RulesAndArchived(
        rules=rules_for_businesses(business_ids), archived=archived_categories_for_businesses(business_ids)
    )


# Per business: its rules and archived categories.
_cache = ProcessCache()


def _from_entries(entries: Mapping[str, tuple[list[OverrideRule], frozenset[str]]]) -> RulesAndArchived:
    return RulesAndArchived(
        rules={business_id: rules for business_id, (rules, _) in entries.items()},
        archived={business_id: archived for business_id, (_, archived) in entries.items()},
    )


def first_rule_not_archived(
    rules: list[OverrideRule], *, expense: Mapping, archived: frozenset[str]
) -> tuple[OverrideRule | None, list[OverrideRule]]:
    """Return the first rule the expense meets whose category is not archived, and the archived ones it met first.

    The caller logs the skipped rules, so a batch that meets one rule many times logs it once.
    """
    skipped = []
    remaining = rules
    while True:
        rule = first_matching_rule(remaining, expense=expense)
        if rule is None or rule.category not in archived:
            return rule, skipped
        skipped.append(rule)
        remaining = remaining[remaining.index(rule) + 1 :]


def first_matching_rule(
    rules: list[OverrideRule], *, expense: Mapping | None = None, supplier: str | None = None
) -> OverrideRule | None:
    """Return the first rule whose conditions the expense meets, or None.

    `expense` is a validated prediction request: supplier, description, amount, currency,
    payment_method and merchant_category are tested. `supplier` alone tests an expense with
    only that field set. A rule that cannot be evaluated is logged and skipped, and the
    rules after it still run.
    """
    fields = dict(expense or {})
    if supplier is not None:
        fields["supplier"] = supplier
    subject = RuleSubject.from_mapping(fields)

    for rule in rules:
        try:
            if rule_matches(rule, subject):
                return rule
        except InvalidRuleError as exc:
            logger.warning(
                "Skipping override rule: %s", exc.reason, extra={"rule_id": rule.pk, "business_id": rule.business_id}
            )
    return None


@dataclass(frozen=True)
class RulePreview:
    """Counts and examples of the past expenses a rule matches, from a bounded scan of the lookup store."""

    scanned: int
    # True when the scan stopped at its maximum before the last expense, so the counts are partial.
    truncated: bool
    matched: int
    # Matched expenses whose stored category differs from the rule's.
    would_change: int
    examples: list[Expense]


def preview_rule(rule: OverrideRule, *, max_scanned: int, max_examples: int) -> RulePreview:
    """Scan up to max_scanned past expenses of the rule's business (every business for a global rule).

    The rule need not be saved. Raises InvalidRuleError for a rule that cannot be evaluated, and
    LookupStoreError (or LookupStoreUnavailable) when the store fails. The counts ignore other
    rules, so an expense a higher-priority rule claims first is still counted.
    """
    if rule.supplier_match == OverrideRule.Match.REGEX:
        compile_rule_pattern(rule)

    expenses = get_lookup_store().iter_expenses(business_id=rule.business_id or None)
    scanned = matched = would_change = 0
    examples = []
    try:
        for expense in itertools.islice(expenses, max_scanned):
            scanned += 1
            if not rule_matches(rule, RuleSubject.from_expense(expense)):
                continue
            matched += 1
            would_change += expense.category != rule.category
            if len(examples) < max_examples:
                examples.append(expense)
        truncated = scanned == max_scanned and next(expenses, None) is not None
    finally:
        # Release the store's cursor when the scan stops early. The interface promises only an
        # Iterator, but both adapters return generators, which have close().
        close = getattr(expenses, "close", None)
        if close is not None:
            close()
    return RulePreview(
        scanned=scanned, truncated=truncated, matched=matched, would_change=would_change, examples=examples
    )


def conflicting_rules(rule: OverrideRule) -> list[OverrideRule]:
    """Return other enabled rules that apply to the same expenses' scope and may assign another category.

    Two rules conflict when their categories differ and their supplier conditions overlap: the
    folded values are equal or one contains the other. A regular expression overlaps a literal
    value it matches and an identical pattern. Other conditions are not compared.
    A business rule is compared with that business's rules and global ones, a global rule with
    every rule. One query.
    """
    others = OverrideRule.objects.filter(enabled=True).exclude(category=rule.category)
    if rule.business_id:
        others = others.filter(Q(business_id=rule.business_id) | Q(business_id=""))
    if rule.pk is not None:
        others = others.exclude(pk=rule.pk)
    return [other for other in others if _suppliers_overlap(rule, other)]


def similar_expenses(*, business_id: str, key: str) -> list[Expense]:
    """Return up to LOOKUP_MAX_MATCHES of the business's live expenses with this supplier key.

    Raises LookupStoreError (or its subclass LookupStoreUnavailable) when the store fails.
    """
    return get_lookup_store().similar_expenses(
        business_id=business_id, supplier_key=key, limit=settings.LOOKUP_MAX_MATCHES
    )


def similar_expenses_many(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list[Expense]]:
    """Return similar_expenses for each (business_id, supplier key) pair, in one store read where it can.

    Raises LookupStoreError (or its subclass LookupStoreUnavailable) when the store fails.
    """
    return get_lookup_store().similar_expenses_many(keys=pairs, limit=settings.LOOKUP_MAX_MATCHES)


def _suppliers_overlap(first: OverrideRule, second: OverrideRule) -> bool:
    regex = OverrideRule.Match.REGEX
    if first.supplier_match == regex and second.supplier_match == regex:
        return first.supplier_value == second.supplier_value
    if first.supplier_match == regex or second.supplier_match == regex:
        pattern_rule, literal_rule = (first, second) if first.supplier_match == regex else (second, first)
        try:
            pattern = compile_rule_pattern(pattern_rule)
        except InvalidRuleError:
            return False
        return bool(pattern.search(regex_subject(literal_rule.supplier_value)))

    first_value = normalise_text(first.supplier_value)
    second_value = normalise_text(second.supplier_value)
    if not first_value or not second_value:
        return False
    return first_value in second_value or second_value in first_value
