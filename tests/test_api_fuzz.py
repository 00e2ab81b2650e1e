"""Property-based fuzzing of every API operation in the OpenAPI schema, with schemathesis.

Schemathesis reads the schema that drf-spectacular serves and calls the WSGI application in
this process, with valid and invalid requests generated from it. Each response must not be a
5xx and must match the schema: a documented status code, content type and body shape.
"""

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from categorisation.clients import create_api_client
from config.wsgi import application

# max_examples bounds the fuzzing phase per operation. The coverage phase adds its own fixed set
# of boundary cases, up to about 350 per operation for this schema.
MAX_EXAMPLES_PER_OPERATION = 50
# The deadline catches a request that hangs, not a slow one: a batch of 1,000 expenses took
# 3.9 s in one run on a 2-core machine shared with other test runs.
DEADLINE_MS = 10_000
# Generated event requests sent by test_generated_events_accepted.
EVENT_EXAMPLES = 60

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def token_header(transactional_db):
    """An Authorization header with a token stored in the test database."""
    return {"Authorization": f"Token {create_api_client(name='fuzz-client')}"}


# The WSGI application runs in this thread and commits as in production, so the events'
# on-commit tasks run too: transactional_db empties the tables after the test.
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES_PER_OPERATION,
    deadline=DEADLINE_MS,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_api_operation_conforms_to_schema(case, token_header):
    case.call_and_validate(headers=token_header, checks=CHECKS)


def _event_form(event: dict) -> str:
    """Name the request alternative a generated event belongs to, as the schema's Event oneOf lists them."""
    envelope = "detail-type" in event
    event_type = event["detail-type"] if envelope else event["type"]
    kind = "deleted" if event_type == "expense.deleted" else "changed"
    return f"{'eventbridge' if envelope else 'plain'}-{kind}"


def test_generated_events_accepted(token_header):
    """Events generated from the schema alone are accepted, in each of the four event forms.

    A schema that leaves `expense` free-form makes every generated event a 400, and then the
    fuzzing never reaches the inbox or the worker.
    """
    operation = schema.find_operation_by_label("POST /api/v1/events")
    accepted_forms = collections.Counter()
    statuses = collections.Counter()

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EVENT_EXAMPLES,
        deadline=DEADLINE_MS,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    def send_generated_events(case):
        response = case.call(headers=token_header)
        case.validate_response(response, checks=CHECKS)
        statuses[response.status_code] += 1
        if response.status_code == 202:
            events = case.body if isinstance(case.body, list) else [case.body]
            accepted_forms.update(_event_form(event) for event in events)

    send_generated_events()

    assert statuses[202] >= EVENT_EXAMPLES // 4, statuses
    assert set(accepted_forms) == {"plain-changed", "plain-deleted", "eventbridge-changed", "eventbridge-deleted"}
