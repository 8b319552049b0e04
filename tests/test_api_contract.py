"""The HTTP API against its own /openapi.json, on the live `fashionattr serve` the HTTP tests share (conftest.py's
`server`: a catalogue and a review queue).

A client a team writes from the spec must find every body it gets described there, errors included: real calls
(a batch with a broken image, base64 JSON, facets, search, an item, similar items, the review queue and a decision,
and mistakes of every kind) are validated against the spec by schemathesis, a maintained OpenAPI tester. Then
schemathesis drives every endpoint with generated requests, bounded in examples and time: no 500, no answer that
breaks its own schema or status list, and the server alive after.
"""

from __future__ import annotations

import base64
import warnings
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fashionattr.bench.service_process import ServiceProcess

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]  # fmt: skip
EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def spec(server: ServiceProcess) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_every_operation_has_a_unique_id_a_typed_answer_and_the_one_error_body(server: ServiceProcess) -> None:
    from fastapi.openapi.utils import get_openapi  # noqa: F401  (FastAPI warns on duplicates while generating)

    document = httpx.get(f"{server.url}/openapi.json").json()
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), ids
    assert "HTTPValidationError" not in document["components"]["schemas"]  # FastAPI's 422 body is not ours
    for path, methods in document["paths"].items():
        assert path == "/healthz" or path.startswith("/v1/"), path  # the API is versioned
        for method, operation in methods.items():
            answers = operation["responses"]
            content = answers["200"].get("content", {})
            assert content, (method, path)
            json_body = content.get("application/json")
            assert json_body is None or json_body["schema"], (method, path)  # no empty `{ }` schema
            takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
            assert "500" in answers and ("422" in answers or not takes_input), (method, path, list(answers))
            for status, answer in answers.items():
                if status.startswith(("4", "5")) and path != "/healthz":  # /healthz's 503 is its own full report
                    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "Duplicate Operation ID" not in server.log.read_text()


def assert_conforms(spec: Any, path: str, method: str, response: httpx.Response) -> None:
    """The response is one the spec declares for this operation, with the body its schema describes."""
    response.request.read()  # a multipart request streams; the validator looks at what was sent
    spec[path][method].validate_response(response)


def test_a_client_written_from_the_spec_gets_answers_the_spec_describes(server, spec, trained_run) -> None:
    photos = sorted((trained_run.data / "Images" / "skirt_length_labels").glob("*.jpg"))[:2]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        batch = client.post("/v1/predict", files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
                            + [("files", ("broken.jpg", b"\xff\xd8 not really", "image/jpeg"))])  # fmt: skip
        assert_conforms(spec, "/v1/predict", "POST", batch)
        assert [bool(e.get("error")) for e in batch.json()["predictions"]] == [False, False, True]
        encoded = {"images": [{"name": photos[0].name, "data": base64.b64encode(photos[0].read_bytes()).decode()}]}
        assert_conforms(spec, "/v1/predict", "POST", client.post("/v1/predict", json=encoded))
        for path in ("/v1/schema", "/healthz", "/v1/catalog", "/v1/catalog/facets", "/v1/catalog/search", "/v1/review"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            assert_conforms(spec, path, "GET", response)
        item = client.get("/v1/catalog/search").json()["items"][0]
        for template, path in (("/v1/catalog/items/{item_id}", f"/v1/catalog/items/{item['id']}"),
                               ("/v1/catalog/similar/{item_id}", f"/v1/catalog/similar/{item['id']}"),
                               ("/v1/catalog/thumbnail/{item_id}", item["thumbnail_url"]),
                               ("/v1/catalog/export", "/v1/catalog/export?format=jsonl")):  # fmt: skip
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            assert_conforms(spec, template, "GET", response)
        candidate = client.get("/v1/review").json()["candidates"][0]
        decided = client.post(
            "/v1/review/decisions",
            json={"path": candidate["path"], "attribute": candidate["attribute"], "decision": "keep"},
        )
        assert decided.status_code == 200, decided.text
        assert_conforms(spec, "/v1/review/decisions", "POST", decided)
        mistakes = [
            ("/v1/catalog/search", "GET", client.get("/v1/catalog/search", params={"limit": "many"}), 422),
            ("/v1/catalog/facets", "GET", client.get("/v1/catalog/facets", params={"filter": "hat=big"}), 422),
            ("/v1/catalog/items/{item_id}", "GET", client.get("/v1/catalog/items/999999"), 404),
            ("/v1/predict", "POST", client.post("/v1/predict", content=b"hi", headers={"content-type": "text/plain"}),
             415),
            ("/v1/explain", "POST", client.post("/v1/explain", files=[("files", ("a.jpg", b"x"))]), 422),
            ("/v1/review/decisions", "POST", client.post("/v1/review/decisions", json={"path": "x"}), 422),
        ]  # fmt: skip
        for template, method, response, status in mistakes:
            assert response.status_code == status, (template, response.text)
            assert_conforms(spec, template, method, response)
            assert response.json()["error"]
        problems = mistakes[0][2].json()["problems"]
        assert problems[0]["where"] == "query limit"  # the 422 body says which parameter, as the spec declares


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_generated_requests_to_every_endpoint_get_no_500_and_answers_that_match_the_spec(server, spec) -> None:
    operations = [result.ok() for result in spec.get_all_operations()]
    assert len(operations) >= 15
    failures: dict[str, str] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
        def drive(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                drive()
            except Exception as exc:  # collect every operation's first failure, then report them all
                failures[operation.label] = str(exc)[:2000]
    assert server.process.poll() is None
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
