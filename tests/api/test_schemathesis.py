"""schemathesis against the live app's published OpenAPI document: no 500, and every answer
conforms to the document (status code, content type, headers, body schema).

A bounded number of examples per operation keeps this within the normal suite (about a minute
on two cores); a schemathesis run with more examples is the same test with ``CORRAL_SCHEMATHESIS_EXAMPLES``
raised.  Requests carry a bearer token, so the generated cases reach the routes' own checks.
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("CORRAL_SCHEMATHESIS_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.timeout(600)
def test_every_operation_conforms_to_the_published_document(live_server: str, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    schema = schemathesis.openapi.from_url(f"{live_server}/api/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(
            case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
            | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live_server, headers=alice.bearer, checks=CHECKS, timeout=30)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert operations > 50
    assert not failures, "\n\n".join(failures)
