"""Fixtures of the browser tests: Debian's headless Chromium, driven by Playwright, against live_server.

The tests launch the Chromium that `make install-dev` installs from Debian at /usr/bin/chromium,
not a browser downloaded by `playwright install`.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import sync_playwright

from lookup.stores import get_lookup_store
from tests.mlops.synthetic import expense_change, synthetic_records

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Timeouts in milliseconds. Training runs inside the request that the Train button sends, so the
# navigation after it gets the longer one.
ACTION_TIMEOUT_MS = 30_000
NAVIGATION_TIMEOUT_MS = 120_000
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
ML_STAFF_PASSWORD = "browser-test-password"
ML_MODELS = ("modelversion", "trainingrun", "deployment", "datasetsnapshot")
STAFF_GROUPS = ("support", "ML")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """The path of Chromium. Skips the browser tests when it is missing, or fails them when CI=true."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"Chromium is not installed at {CHROMIUM}. Run `make install-dev` to install Debian's chromium package."
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(chromium_path):
    """One headless Chromium for a test module."""
    # Playwright's sync API keeps an asyncio event loop running in the test thread, so Django
    # rejects the tests' ORM calls as calls from async code unless this variable is set. The
    # module scope stops the loop and restores the environment before the next test module.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A page in a fresh browser context that can reach only the live server on loopback.

    A request to any other host is aborted, and the test then fails at teardown with its URL.
    """
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    blocked = []

    def allow_loopback_only(route):
        host = urlsplit(route.request.url).hostname
        if host in LOOPBACK_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", allow_loopback_only)
    browser_page = context.new_page()
    yield browser_page
    context.close()
    assert not blocked, f"The admin pages requested hosts other than loopback: {blocked}"


@pytest.fixture
def screenshot(page):
    """Save a full-page screenshot of the current page as test-artifacts/screenshots/<NN>-<step>.png.

    NN numbers the screenshots of a test in the order taken. The folder's earlier screenshots
    named this way are deleted first, so they show one run only. Screenshots with a prefix, such
    as support-01-login.png, belong to other tests and are kept.
    """
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOT_DIR.glob("[0-9][0-9]-*.png"):
        old.unlink()
    saved_paths = []

    def save(step: str) -> Path:
        path = SCREENSHOT_DIR / f"{len(saved_paths) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        saved_paths.append(path)
        return path

    return save


@pytest.fixture
def ml_staff_user(transactional_db, django_user_model):
    """A staff user, not a superuser, with view, add and change permissions on the mlops models."""
    user = django_user_model.objects.create_user(username="ml-staff", password=ML_STAFF_PASSWORD, is_staff=True)
    codenames = [f"{action}_{model}" for model in ML_MODELS for action in ("view", "add", "change")]
    permissions = Permission.objects.filter(content_type__app_label="mlops", codename__in=codenames)
    assert permissions.count() == len(codenames), "an mlops permission is missing; were the migrations run?"
    user.user_permissions.set(permissions)
    return user


@pytest.fixture
def categorised_expenses(transactional_db) -> int:
    """Store 300 synthetic categorised expenses in the lookup store and return how many."""
    count = 300
    store = get_lookup_store()
    for index, (record, category, date) in enumerate(synthetic_records(count)):
        store.apply(expense_change(expense_id=f"e{index}", record=record, category=category, date=date))
    return count


@pytest.fixture(scope="session", autouse=True)
def staff_group_permissions(django_db_setup, django_db_blocker) -> dict[str, list[tuple[str, str]]]:
    """The staff groups that the migrations created, each with its permissions as (app label, codename).

    Read once before the first browser test, because each browser test flushes the database when
    it ends, which deletes the rows that data migrations wrote. Django's serialized rollback
    cannot restore them here: Playwright's sync API runs the test in a greenlet with its own
    context variables, so the test sees a database connection without the serialized data.
    """
    with django_db_blocker.unblock():
        return {
            group.name: list(group.permissions.values_list("content_type__app_label", "codename"))
            for group in Group.objects.filter(name__in=STAFF_GROUPS)
        }


@pytest.fixture
def staff_groups(transactional_db, staff_group_permissions) -> dict[str, Group]:
    """Recreate the staff groups that the migrations created, with their permissions, and return them by name.

    The result is empty when no migration creates the groups.
    """
    groups = {}
    for name, natural_keys in staff_group_permissions.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in natural_keys:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        groups[name] = group
    return groups
