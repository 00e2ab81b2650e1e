"""The model lifecycle in the admin, as ML staff see it in a real browser.

An ML staff user logs in, trains a model, reads the run's progress and the version's metrics and
charts, deploys it, deploys a second version and rolls back to the first. Celery runs eagerly in
the test settings, so a training run has finished by the time its page opens.
"""

import re
from typing import NamedTuple

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ML_STAFF_PASSWORD
from tests.mlops.synthetic import CATEGORY_PROFILES

pytestmark = pytest.mark.browser

VERSION_ID = re.compile(r"^v\d{8}-\d{6}-[0-9a-f]{4}$")


class Version(NamedTuple):
    """A model version as the admin links to it: its id and the path of its page."""

    name: str
    path: str


def test_ml_staff_train_deploy_roll_back(page, screenshot, ml_staff_user, categorised_expenses):
    _log_in(page, screenshot, username=ml_staff_user.get_username())

    first = _train(page, screenshot, label="first", expected_rows=categorised_expenses)
    _check_version_page(page, screenshot, version=first, label="first")
    _deploy(page, screenshot, version=first, label="first")
    _expect_active(page, screenshot, version=first, label="after-first-deploy")

    second = _train(page, screenshot, label="second", expected_rows=categorised_expenses)
    assert second != first
    _check_version_page(page, screenshot, version=second, label="second")
    _deploy(page, screenshot, version=second, label="second")
    _expect_active(page, screenshot, version=second, label="after-second-deploy")

    _roll_back(page, screenshot, version=first, label="first")
    _expect_active(page, screenshot, version=first, label="after-roll-back")


def _log_in(page: Page, screenshot, *, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    screenshot("login")
    page.fill("#id_username", username)
    page.fill("#id_password", ML_STAFF_PASSWORD)
    page.click("input[type=submit]")

    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("link", name="Model versions")).to_be_visible()
    screenshot("admin-index")


def _train(page: Page, screenshot, *, label: str, expected_rows: int) -> Version:
    """Start a training run from the model version list and return the version it registered."""
    page.goto("/admin/mlops/modelversion/")
    screenshot(f"model-versions-before-{label}-training")
    page.get_by_role("link", name="Train a new model").click()
    expect(page.locator("h1")).to_have_text("Train a new model")
    screenshot(f"train-{label}-confirm")
    page.click("input[type=submit][value=Train]")

    # The confirmation redirects to the run's page.
    expect(page).to_have_url(re.compile(r"/admin/mlops/trainingrun/\d+/change/$"))
    expect(page.locator(".messagelist li")).to_contain_text("this page shows its progress")
    expect(_field(page, "status")).to_have_text("Succeeded")
    expect(_field(page, "rows_read")).to_have_text(str(expected_rows))
    # The stage is cleared when a run finishes, and the admin shows an empty value as "-".
    expect(_field(page, "stage")).to_have_text("-")
    expect(_field(page, "error")).to_have_text("-")
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)
    registered = page.locator("#content-main p", has_text="Registered").get_by_role("link")
    version = Version(name=registered.inner_text().strip(), path=registered.get_attribute("href"))
    assert VERSION_ID.match(version.name), version
    expect(_field(page, "model_version")).to_have_text(version.name)
    screenshot(f"training-run-{label}")

    page.goto("/admin/mlops/trainingrun/")
    row = page.locator("#result_list tbody tr", has_text=version.name)
    expect(row.locator("td.field-status")).to_have_text("Succeeded")
    expect(row.locator("td.field-rows_read")).to_have_text(str(expected_rows))
    screenshot(f"training-runs-after-{label}")
    return version


def _check_version_page(page: Page, screenshot, *, version: Version, label: str) -> None:
    _open_version(page, version)

    expect(page.locator(".errornote")).to_have_count(0)
    overall = _table_after(page, "Holdout metrics")
    for metric in ("Holdout rows", "Top-1 accuracy", "Top-3 accuracy", "Macro F1", "Expected calibration error"):
        expect(overall.locator("tr", has=page.locator("th", has_text=metric))).to_have_count(1)
    top1 = float(overall.locator("tr", has_text="Top-1 accuracy").locator("td").inner_text())
    assert 0.0 <= top1 <= 1.0, top1
    assert _table_after(page, "Confidence thresholds").locator("tbody tr").count() > 0

    per_category = _table_after(page, "Per category")
    categories = per_category.locator("tbody tr td:first-child").all_inner_texts()
    assert sorted(categories) == sorted(CATEGORY_PROFILES)

    charts = page.locator(f'img[alt$="chart of {version.name}"]')
    expect(charts).to_have_count(2)
    for chart in charts.all():
        # complete is also true for an image that failed to load, which has a naturalWidth of 0.
        chart.evaluate("image => image.decode().catch(() => null)")
        width = chart.evaluate("image => image.complete ? image.naturalWidth : 0")
        assert width > 0, f"chart {chart.get_attribute('src')} did not load"
    screenshot(f"version-{label}-metrics")


def _deploy(page: Page, screenshot, *, version: Version, label: str) -> None:
    _open_version(page, version)
    screenshot(f"version-{label}-before-deploy")
    page.get_by_role("link", name="Deploy this version").click()

    expect(page.locator("h1")).to_have_text(f"Deploy {version.name}")
    expect(page.locator("h2", has_text="Promotion gate")).to_have_text("Promotion gate: passed")
    expect(page.locator("#content-main p.success")).not_to_be_empty()
    screenshot(f"deploy-{label}-confirm")
    page.click("input[type=submit][value=Deploy]")

    expect(page).to_have_url(re.compile(r"/admin/mlops/deployment/\d+/change/$"))
    expect(page.locator(".messagelist li")).to_have_text(f"Deploy of {version.name}: succeeded.")
    expect(_field(page, "status")).to_have_text("Succeeded")
    expect(_step_status(page, "promotion gate")).to_have_text("succeeded")
    expect(_step_status(page, "activate version")).to_have_text("succeeded")
    screenshot(f"deployment-{label}")


def _roll_back(page: Page, screenshot, *, version: Version, label: str) -> None:
    _open_version(page, version)
    screenshot(f"version-{label}-before-roll-back")
    page.get_by_role("link", name="Roll back to this version").click()

    expect(page.locator("h1")).to_have_text(f"Roll back to {version.name}")
    screenshot(f"roll-back-{label}-confirm")
    page.click("input[type=submit][value='Roll back']")

    expect(page).to_have_url(re.compile(r"/admin/mlops/deployment/\d+/change/$"))
    expect(page.locator(".messagelist li")).to_have_text(f"Rollback of {version.name}: succeeded.")
    expect(_field(page, "kind")).to_have_text("Rollback")
    expect(_field(page, "status")).to_have_text("Succeeded")
    expect(_step_status(page, "promotion gate")).to_have_text("skipped")
    expect(_step_status(page, "activate version")).to_have_text("succeeded")
    screenshot(f"roll-back-{label}-deployment")


def _expect_active(page: Page, screenshot, *, version: Version, label: str) -> None:
    page.goto("/admin/mlops/modelversion/?is_active__exact=1")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("th.field-version")).to_have_text(version.name)
    screenshot(f"active-version-{label}")

    _open_version(page, version)
    expect(_field(page, "is_active").locator("img")).to_have_attribute("alt", "True")
    # The deploy and roll-back links are offered only for versions that are not active.
    expect(page.get_by_role("link", name="Deploy this version")).to_have_count(0)
    screenshot(f"version-page-{label}")


def _open_version(page: Page, version: Version) -> None:
    page.goto(version.path)
    expect(_field(page, "version")).to_have_text(version.name)


def _field(page: Page, name: str):
    """The value of a read-only field on an admin change page."""
    return page.locator(f".form-row.field-{name} .readonly")


def _table_after(page: Page, heading: str):
    return page.locator(f"xpath=//h2[normalize-space()='{heading}']/following-sibling::table[1]")


def _step_status(page: Page, step: str):
    """The status cell of a step in a deployment page's steps table."""
    row = _table_after(page, "Steps").locator("tbody tr", has=page.locator("td:first-child", has_text=step))
    return row.locator("td:nth-child(2)")
