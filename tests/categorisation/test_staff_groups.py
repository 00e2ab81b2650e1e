"""The support and ML groups: each reaches its own admin pages and is refused the other's."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from lookup.models import OverrideRule

pytestmark = pytest.mark.django_db

SUPPORT_PAGES = (
    "admin:lookup_overriderule_changelist",
    "admin:lookup_overriderule_add",
    "admin:lookup_expenseevent_changelist",
    "admin:lookup_lookupexpense_browse",
    "admin:categorisation_try_prediction",
)
ML_PAGES = (
    "admin:mlops_modelversion_changelist",
    "admin:mlops_trainingrun_changelist",
    "admin:mlops_deployment_changelist",
    "admin:mlops_datasetsnapshot_changelist",
    "admin:mlops_modelversion_train",
)


def _staff_client(client, group_name):
    user = get_user_model().objects.create_user(username=f"{group_name}-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    client.force_login(user)
    return client


def test_groups_exist_after_migrations():
    assert set(Group.objects.values_list("name", flat=True)) >= {"support", "ML"}


@pytest.mark.parametrize("page", SUPPORT_PAGES)
def test_support_reaches_support_pages(client, page):
    response = _staff_client(client, "support").get(reverse(page))

    assert response.status_code == 200


@pytest.mark.parametrize("page", ML_PAGES)
def test_support_refused_ml_pages(client, page):
    response = _staff_client(client, "support").get(reverse(page))

    assert response.status_code in (302, 403)


@pytest.mark.parametrize("page", ML_PAGES)
def test_ml_reaches_ml_pages(client, page):
    response = _staff_client(client, "ML").get(reverse(page))

    assert response.status_code == 200


@pytest.mark.parametrize("page", SUPPORT_PAGES)
def test_ml_refused_support_pages(client, page):
    response = _staff_client(client, "ML").get(reverse(page))

    assert response.status_code in (302, 403)


def test_ml_cannot_post_rule(client):
    response = _staff_client(client, "ML").post(
        reverse("admin:lookup_overriderule_add"),
        {"business_id": "b1", "supplier_match": "contains", "supplier_value": "cafe", "category": "Meals"},
    )

    assert response.status_code in (302, 403)
    assert not OverrideRule.objects.exists()


def test_support_cannot_start_training(client):
    response = _staff_client(client, "support").post(reverse("admin:mlops_modelversion_train"), {"confirm": "yes"})

    assert response.status_code in (302, 403)
    assert not _training_runs_exist()


def test_superuser_reaches_every_page(admin_client):
    for page in SUPPORT_PAGES + ML_PAGES:
        assert admin_client.get(reverse(page)).status_code == 200, page


def _training_runs_exist():
    from mlops.models import TrainingRun

    return TrainingRun.objects.exists()
