"""The per-process cache of override rules and archived categories that predictions read."""

import pytest

from lookup import selectors
from lookup.models import ArchivedCategory, OverrideRule
from lookup.selectors import rules_and_archived_for_businesses

pytestmark = pytest.mark.django_db


def _rule(business_id="b1", category="Software"):
    return OverrideRule.objects.create(
        business_id=business_id, supplier_match=OverrideRule.Match.CONTAINS, supplier_value="adobe", category=category
    )


def _categories(business_id="b1"):
    return [rule.category for rule in rules_and_archived_for_businesses({business_id}).rules[business_id]]


def test_second_read_makes_no_query(django_assert_num_queries):
    _rule()
    with django_assert_num_queries(2):
        first = rules_and_archived_for_businesses({"b1", "b2"})

    with django_assert_num_queries(0):
        second = rules_and_archived_for_businesses({"b1", "b2"})

    assert second == first
    assert [rule.category for rule in second.rules["b1"]] == ["Software"]


def test_new_business_read_alone(django_assert_num_queries):
    rules_and_archived_for_businesses({"b1"})

    with django_assert_num_queries(2):
        found = rules_and_archived_for_businesses({"b1", "b2"})

    assert set(found.rules) == {"b1", "b2"}


def test_saved_rule_seen_at_once():
    assert _categories() == []

    rule = _rule()
    assert _categories() == ["Software"]

    rule.category = "Travel"
    rule.save()
    assert _categories() == ["Travel"]

    rule.delete()
    assert _categories() == []


def test_archived_category_seen_at_once():
    assert rules_and_archived_for_businesses({"b1"}).archived["b1"] == frozenset()

    ArchivedCategory.objects.create(business_id="b1", category="Meals")
    assert rules_and_archived_for_businesses({"b1"}).archived["b1"] == frozenset({"Meals"})

    ArchivedCategory.objects.filter(business_id="b1").delete()
    assert rules_and_archived_for_businesses({"b1"}).archived["b1"] == frozenset()


def test_entry_expires(monkeypatch, settings):
    settings.RULES_CACHE_SECONDS = 5.0
    now = [1000.0]
    monkeypatch.setattr(selectors.time, "monotonic", lambda: now[0])
    _categories()
    # A change no signal reports, as from another process.
    OverrideRule.objects.bulk_create(
        [OverrideRule(business_id="b1", supplier_match="contains", supplier_value="adobe", category="Software")]
    )

    now[0] += 4.9
    assert _categories() == []

    now[0] += 0.2
    assert _categories() == ["Software"]


def test_zero_seconds_reads_every_time(settings, django_assert_num_queries):
    settings.RULES_CACHE_SECONDS = 0
    rules_and_archived_for_businesses({"b1"})

    with django_assert_num_queries(2):
        rules_and_archived_for_businesses({"b1"})


def test_cache_bounded(monkeypatch):
    monkeypatch.setattr(selectors, "RULES_CACHE_MAX_BUSINESSES", 3)

    rules_and_archived_for_businesses({"b1", "b2"})
    rules_and_archived_for_businesses({"b3", "b4"})

    assert set(selectors._cache.entries) == {"b3", "b4"}
