"""Property-based fuzzing of every API operation in the OpenAPI schema, with schemathesis.

Schemathesis reads the schema that drf-spectacular serves and calls the WSGI application in
this process, with valid and invalid requests generated from it. Each response must not be a
5xx and must match the schema: a documented status code, content type and body shape.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from categorisation.clients import create_api_client
from config.wsgi import application

# max_examples bounds the fuzzing phase per operation. The coverage phase adds its own fixed set
# of boundary cases, up to about 350 per operation for this schema, so the module took about
# 12 s on a 2-core container.
MAX_EXAMPLES_PER_OPERATION = 50
DEADLINE_MS = 2000

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
