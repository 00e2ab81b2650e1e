import pytest

from lookup.models import ExpenseEvent

EXPENSE = {
    "business_id": "b-1",
    "expense_id": "e-1",
    "version": 1,
    "supplier": "Harbour Bakery",
    "amount": "12.50",
    "currency": "GBP",
    "date": "2025-03-01",
    "category": "Meals",
}


def envelope(**overrides):
    body = {
        "version": "0",
        "id": "eb-1",
        "detail-type": "expense.created",
        "source": "app.expenses",
        "account": "123456789012",
        "time": "2025-03-01T10:00:00Z",
        "region": "eu-west-2",
        "resources": [],
        "detail": {"expense": EXPENSE},
    }
    return body | overrides


@pytest.mark.django_db
def test_envelope_is_accepted_with_id_as_event_id(api_client):
    response = api_client.post("/api/v1/events", envelope(), format="json")

    assert response.status_code == 202, response.content
    event = ExpenseEvent.objects.get()
    assert event.event_id == "eb-1"
    assert event.type == "expense.created"


@pytest.mark.django_db
def test_detail_event_id_wins_over_envelope_id(api_client):
    response = api_client.post(
        "/api/v1/events", envelope(detail={"event_id": "own-1", "expense": EXPENSE}), format="json"
    )

    assert response.status_code == 202, response.content
    assert ExpenseEvent.objects.get().event_id == "own-1"


@pytest.mark.django_db
def test_list_may_mix_plain_and_envelope_forms(api_client):
    plain = {"event_id": "plain-1", "type": "expense.updated", "expense": EXPENSE | {"version": 2}}

    response = api_client.post("/api/v1/events", [plain, envelope()], format="json")

    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 2


@pytest.mark.django_db
def test_unknown_detail_type_is_rejected_naming_the_field(api_client):
    response = api_client.post("/api/v1/events", envelope(**{"detail-type": "invoice.paid"}), format="json")

    assert response.status_code == 400
    assert "detail-type" in response.content.decode()
    assert "invoice.paid" in response.content.decode()


@pytest.mark.django_db
def test_invalid_expense_error_names_the_envelope_path(api_client):
    response = api_client.post(
        "/api/v1/events", envelope(detail={"expense": EXPENSE | {"version": "x"}}), format="json"
    )

    assert response.status_code == 400
    assert "detail.expense" in response.content.decode()
    assert not ExpenseEvent.objects.exists()


@pytest.mark.django_db
def test_detail_that_is_not_an_object_is_rejected(api_client):
    response = api_client.post("/api/v1/events", envelope(detail="nope"), format="json")

    assert response.status_code == 400
    assert "detail" in response.content.decode()


@pytest.mark.django_db
def test_bad_time_error_names_time(api_client):
    response = api_client.post("/api/v1/events", envelope(time="yesterday"), format="json")

    assert response.status_code == 400
    assert '"time"' in response.content.decode()
