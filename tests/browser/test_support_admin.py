"""The support staff's admin tools, as a support user sees them in a real browser.

A support user logs in, finds a business in the lookups browser, tries a prediction and reads
the lookup's evidence, writes an override rule after previewing it, sees the next prediction
follow the rule, and retries an event whose store write failed. The lookup store is seeded
through the event inbox, and Celery runs eagerly in the test settings, so each accepted or
retried event has been applied by the time the call returns.
"""

import re

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from lookup import services
from lookup.models import ExpenseEvent, OverrideRule
from lookup.serializers import EventSerializer
from lookup.stores import LookupStoreError
from lookup.stores.base import LookupStore
from lookup.stores.sql import SqlLookupStore
from tests.browser.conftest import ML_STAFF_PASSWORD, SCREENSHOT_DIR
from tests.factories import created_event

pytestmark = pytest.mark.browser

SUPPORT_GROUP = "support"
ML_GROUP = "ML"
# The permissions the support group grants, given to the user directly when the group does not exist.
SUPPORT_PERMISSIONS = (
    "lookup.view_overriderule",
    "lookup.add_overriderule",
    "lookup.change_overriderule",
    "lookup.delete_overriderule",
    "lookup.view_lookupexpense",
    "lookup.view_expenseevent",
    "lookup.change_expenseevent",
)

BUSINESS = "acme-ltd"
OTHER_BUSINESS = "birch-studio"
SUPPLIER = "Blue Heron Cafe"
LOOKUP_CATEGORY = "Meals"
RULE_CATEGORY = "Entertainment"
FAILING_EVENT_ID = "evt-store-write-fails"

# (business, expense id, supplier, category, date) of the seeded expenses. The business has
# three Meals and one Entertainment expense of the supplier, so a rule assigning Entertainment
# matches four and changes three. The other business's expenses of the same supplier must not
# appear in its lookups or its rule preview.
SEEDED_EXPENSES = (
    (BUSINESS, "acme-1", SUPPLIER, LOOKUP_CATEGORY, "2024-11-01"),
    (BUSINESS, "acme-2", "BLUE HERON CAFE #0042", LOOKUP_CATEGORY, "2024-11-05"),
    (BUSINESS, "acme-3", SUPPLIER, LOOKUP_CATEGORY, "2024-11-08"),
    (BUSINESS, "acme-4", SUPPLIER, RULE_CATEGORY, "2024-10-20"),
    (BUSINESS, "acme-5", "Paper Stack Ltd", "Office supplies", "2024-11-02"),
    (BUSINESS, "acme-6", "Paper Stack Ltd", "Office supplies", "2024-11-09"),
    (OTHER_BUSINESS, "birch-1", SUPPLIER, "Travel", "2024-11-03"),
    (OTHER_BUSINESS, "birch-2", SUPPLIER, "Travel", "2024-11-07"),
)
BUSINESS_SUPPLIER_EXPENSES = 4
BUSINESS_EXPENSES = 6
PREDICTION = {"business_id": BUSINESS, "supplier": SUPPLIER, "amount": "4.50", "currency": "GBP", "date": "2024-11-12"}


def _validated(events: list[dict]) -> list[dict]:
    serializer = EventSerializer(data=events, many=True)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@pytest.fixture
def support_user(staff_groups, django_user_model):
    """A staff user, not a superuser, in the support group, or with its permissions if the group is missing."""
    user = django_user_model.objects.create_user(username="support-staff", password=ML_STAFF_PASSWORD, is_staff=True)
    group = staff_groups.get(SUPPORT_GROUP)
    if group is not None:
        user.groups.add(group)
        return user

    codenames = [name.split(".", 1)[1] for name in SUPPORT_PERMISSIONS]
    permissions = Permission.objects.filter(content_type__app_label="lookup", codename__in=codenames)
    assert permissions.count() == len(codenames), "a lookup permission is missing; were the migrations run?"
    user.user_permissions.set(permissions)
    return user


@pytest.fixture
def seeded_lookup(transactional_db) -> None:
    """Accept one expense.created event per seeded expense and check that each was applied."""
    events = [
        created_event(
            event_id=f"evt-{expense_id}",
            business_id=business_id,
            expense_id=expense_id,
            supplier=supplier,
            category=category,
            date=date,
        )
        for business_id, expense_id, supplier, category, date in SEEDED_EXPENSES
    ]
    services.accept_events(events=_validated(events))

    statuses = set(ExpenseEvent.objects.values_list("status", flat=True))
    assert statuses == {ExpenseEvent.Status.APPLIED}, statuses


@pytest.fixture
def support_screenshot(page):
    """Save a full-page screenshot as test-artifacts/screenshots/support-<NN>-<step>.png.

    The earlier support screenshots are deleted first, so the folder shows one run of this test.
    """
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOT_DIR.glob("support-*.png"):
        old.unlink()
    saved_paths = []

    def save(step: str):
        path = SCREENSHOT_DIR / f"support-{len(saved_paths) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        saved_paths.append(path)
        return path

    return save


def test_support_rule_and_event_retry(page, support_screenshot, support_user, seeded_lookup, monkeypatch):
    screenshot = support_screenshot
    _log_in(page, screenshot, username=support_user.get_username())
    _find_business(page, screenshot)

    lookup_row = _predict(page, screenshot, label="before-rule")
    expect(lookup_row.locator("td").nth(1)).to_have_text(LOOKUP_CATEGORY)
    expect(lookup_row.locator("td").nth(3)).to_have_text("lookup")
    provenance = lookup_row.locator("td").nth(4)
    expect(provenance).to_contain_text(f"3 of {BUSINESS_SUPPLIER_EXPENSES} past expenses agree")
    for expense_id in ("acme-1", "acme-2", "acme-3"):
        expect(provenance.locator("li", has_text=expense_id)).to_have_count(1)

    rule = _write_rule(page, screenshot)

    rule_row = _predict(page, screenshot, label="after-rule")
    expect(rule_row.locator("td").nth(1)).to_have_text(RULE_CATEGORY)
    expect(rule_row.locator("td").nth(3)).to_have_text("rule")
    expect(rule_row.locator("td").nth(4)).to_have_text(f"Rule {rule.pk}")
    expect(rule_row.get_by_role("link", name=str(rule.pk))).to_have_attribute(
        "href", f"/admin/lookup/overriderule/{rule.pk}/change/"
    )

    failed = _seed_failed_event(monkeypatch)
    _retry_failed_event(page, screenshot, event=failed)


@pytest.mark.parametrize(
    ("group_name", "refused_path"),
    [
        (SUPPORT_GROUP, "/admin/mlops/modelversion/"),
        (ML_GROUP, "/admin/lookup/overriderule/"),
    ],
)
def test_group_forbidden_other_pages(page, staff_groups, django_user_model, group_name, refused_path):
    if set(staff_groups) != {SUPPORT_GROUP, ML_GROUP}:
        pytest.skip(f"the {SUPPORT_GROUP!r} and {ML_GROUP!r} groups do not exist; their data migration has not run")
    user = django_user_model.objects.create_user(
        username=f"{group_name.lower()}-staff", password=ML_STAFF_PASSWORD, is_staff=True
    )
    user.groups.add(staff_groups[group_name])
    _submit_login(page, username=user.get_username())
    expect(page).to_have_url(re.compile(r"/admin/$"))

    response = page.goto(refused_path)

    refused = response.status == 403 or "/admin/login/" in page.url
    assert refused, f"{group_name} user got {response.status} at {page.url}"


def _submit_login(page: Page, *, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", ML_STAFF_PASSWORD)
    page.click("input[type=submit]")


def _log_in(page: Page, screenshot, *, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    screenshot("login")
    _submit_login(page, username=username)

    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("link", name="Lookups browser")).to_be_visible()
    expect(page.get_by_role("link", name="Try a prediction")).to_be_visible()
    screenshot("admin-index")


def _find_business(page: Page, screenshot) -> None:
    page.get_by_role("link", name="Lookups browser").click()
    expect(page.locator("h1")).to_have_text("Lookups browser")
    page.fill("#id_business_id", BUSINESS)
    page.click("#lookups-search input[type=submit]")

    rows = page.locator("#lookup-expenses tbody tr")
    expect(rows).to_have_count(BUSINESS_EXPENSES)
    expect(page.locator("#lookup-expenses")).not_to_contain_text("birch-")
    # Each expense links to the event that wrote it.
    first_event = rows.first.locator("td").last.get_by_role("link")
    expect(first_event).to_have_text(re.compile(r"^evt-acme-\d$"))
    screenshot("lookups-business")

    page.fill("#id_supplier", "blue heron cafe")
    page.click("#lookups-search input[type=submit]")

    expect(page.locator("h2", has_text="Supplier key")).to_have_text("Supplier key “blue heron cafe”")
    summary = page.locator("#supplier-summary tbody tr")
    expect(summary).to_have_count(2)
    expect(summary.nth(0).locator("td")).to_have_text([LOOKUP_CATEGORY, "3"])
    expect(summary.nth(1).locator("td")).to_have_text([RULE_CATEGORY, "1"])
    expect(page.locator("#lookup-expenses tbody tr")).to_have_count(BUSINESS_SUPPLIER_EXPENSES)
    screenshot("lookups-supplier")


def _predict(page: Page, screenshot, *, label: str):
    """Submit PREDICTION on the "Try a prediction" page and return the first ranked category's row."""
    page.goto("/admin/")
    page.get_by_role("link", name="Try a prediction").click()
    expect(page.locator("h1")).to_have_text("Try a prediction")
    for name, value in PREDICTION.items():
        page.fill(f"#id_{name}", value)
    page.click("#try-prediction input[type=submit][value=Predict]")

    expect(page.locator("h2", has_text="Ranked categories")).to_be_visible()
    expect(page.locator(".errornote", has_text="Please correct")).to_have_count(0)
    expect(page.locator("#prediction-json")).to_contain_text('"categories"')
    screenshot(f"prediction-{label}")
    return page.locator("#prediction-categories tbody tr").first


def _write_rule(page: Page, screenshot) -> OverrideRule:
    page.goto("/admin/lookup/overriderule/")
    screenshot("rules-before")
    page.goto("/admin/lookup/overriderule/add/")
    page.fill("#id_business_id", BUSINESS)
    page.select_option("#id_supplier_match", OverrideRule.Match.EQUALS)
    page.fill("#id_supplier_value", SUPPLIER)
    page.fill("#id_category", RULE_CATEGORY)
    page.fill("#id_note", "Client meetings at this cafe are entertainment.")
    screenshot("rule-form")
    page.click("input[type=submit][name=_preview]")

    expect(page.locator("#rule-preview h2")).to_have_text("Preview (not saved)")
    expect(page.locator("#rule-preview-summary")).to_have_text(
        re.compile(
            rf"Matches {BUSINESS_SUPPLIER_EXPENSES} of {BUSINESS_EXPENSES} past expenses scanned;\s+"
            r"3 of them would change category\."
        )
    )
    expect(page.locator("#rule-preview tbody tr")).to_have_count(BUSINESS_SUPPLIER_EXPENSES)
    expect(page.locator("#rule-preview")).not_to_contain_text(OTHER_BUSINESS)
    # The form keeps the posted values, and nothing has been saved yet.
    expect(page.locator("#id_supplier_value")).to_have_value(SUPPLIER)
    assert not OverrideRule.objects.exists()
    screenshot("rule-preview")

    page.click("input[type=submit][name=_save]")

    expect(page).to_have_url(re.compile(r"/admin/lookup/overriderule/$"))
    expect(page.locator(".messagelist li.success")).to_contain_text("was added successfully")
    rule = OverrideRule.objects.get()
    assert (rule.business_id, rule.supplier_value, rule.category) == (BUSINESS, SUPPLIER, RULE_CATEGORY)
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td.field-category")).to_have_text(RULE_CATEGORY)
    screenshot("rules-after")
    return rule


def _seed_failed_event(monkeypatch) -> ExpenseEvent:
    """Accept an event whose store write fails, so the worker parks it as failed."""
    apply = SqlLookupStore.apply

    def fail_for_one_event(store, change):
        if change.event_id == FAILING_EVENT_ID:
            raise LookupStoreError("SQL lookup store rejected the write: simulated failure")
        return apply(store, change)

    event = created_event(
        event_id=FAILING_EVENT_ID, business_id=BUSINESS, expense_id="acme-7", supplier=SUPPLIER, category="Meals"
    )
    with monkeypatch.context() as patch:
        patch.setattr(SqlLookupStore, "apply", fail_for_one_event)
        patch.setattr(SqlLookupStore, "apply_many", LookupStore.apply_many)
        services.accept_events(events=_validated([event]))

    failed = ExpenseEvent.objects.get(event_id=FAILING_EVENT_ID)
    assert failed.status == ExpenseEvent.Status.FAILED, failed.status
    assert "simulated failure" in failed.last_error
    return failed


def _retry_failed_event(page: Page, screenshot, *, event: ExpenseEvent) -> None:
    page.goto("/admin/lookup/expenseevent/")
    page.get_by_role("link", name="Failed").click()
    expect(page).to_have_url(re.compile(r"status__exact=failed"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("th.field-event_id, td.field-event_id")).to_have_text(FAILING_EVENT_ID)
    expect(rows.locator("td.field-error_preview")).to_contain_text("simulated failure")
    screenshot("events-failed")

    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_failed")
    page.click("button[name=index]")

    expect(page.locator(".messagelist li")).to_have_text("Queued 1 failed event for retry.")
    event.refresh_from_db()
    assert event.status == ExpenseEvent.Status.APPLIED, (event.status, event.last_error)
    screenshot("events-after-retry")

    page.goto(f"/admin/lookup/expenseevent/{event.pk}/change/")
    expect(page.locator(".form-row.field-status .readonly")).to_have_text("Applied")
    expect(page.locator(".form-row.field-error .readonly")).to_have_text("-")
    screenshot("event-applied")
