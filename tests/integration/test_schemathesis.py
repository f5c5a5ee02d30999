"""schemathesis against /openapi.json with a valid admin key: no 5xx, answers match the document.

Bounded (a few examples per operation) so that it fits `make test`. Operations
are driven one by one through hypothesis (`schemathesis.pytest.from_fixture`
relies on a pytest internal that pytest 9 removed).
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 10
# ignored_auth: our valid key replaces generated credentials (the authz matrix covers bad ones).
# positive_data_acceptance: collector names and options are checked against the installed
# registry, beyond what a static document can say; such a request is a documented 422.
EXCLUDED = [ignored_auth, positive_data_acceptance]
CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def test_api_conforms_to_its_openapi_document(make_app) -> None:
    app = make_app(
        COLLECTQ_RATE_LIMIT_SUBMIT="100000/minute",
        COLLECTQ_RATE_LIMIT_READ="100000/minute",
        COLLECTQ_RATE_LIMIT_ADMIN="100000/minute",
        COLLECTQ_MAX_QUEUED_JOBS="0",
        COLLECTQ_MAX_WAIT="0",  # `?wait=` must not make a fuzzer wait
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {app.config['TEST_API_KEY']}"}
    statuses: Counter[str] = Counter()
    failures: dict[str, str] = {}
    # an Err (an operation the schema cannot describe) has no ok(): it fails the test here
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]

    for op, mode in [(op, m) for op in operations for m in GenerationMode]:
        own_headers = [h for h in op.headers if h.name.lower() not in CREDENTIAL_HEADERS]
        if not any(len(i) for i in (op.path_parameters, op.query, own_headers, op.body)):
            if mode is GenerationMode.NEGATIVE:
                continue  # nothing to make invalid
            examples = 1  # no inputs: one call says it all (/v1/status waits on workers)
        else:
            examples = MAX_EXAMPLES

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            generated = {
                k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS
            }
            case.headers = {**generated, **headers}
            response = case.call_and_validate(excluded_checks=EXCLUDED)
            statuses[f"{response.status_code}"] += 1

        try:
            run()
        except Unsatisfiable:  # every input of this mode was filtered out: nothing to test
            continue
        except (Exception, BaseExceptionGroup) as exc:  # reported below
            failures[f"{op.label} ({mode.value})"] = f"{type(exc).__name__}: {str(exc)[:2000]}"

    print(
        f"\nschemathesis: {len(operations)} operations, {sum(statuses.values())} calls, "
        f"statuses {dict(sorted(statuses.items()))}, failures {len(failures)}"
    )
    for label, err in failures.items():
        print(f"  {label}: {err}")
    assert failures == {}
    assert not any(s.startswith("5") for s in statuses)
