"""Fuzz the API from its own OpenAPI schema with schemathesis, in-process (the ASGI app on a
tiny corpus with the fake model): every operation, data that fits the schema and data that
does not, bounded in examples and time. No response may be a 5xx, and every response must
match its documented status codes, content types and schemas."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder

MAX_EXAMPLES = 50  # per operation and mode
BUDGET_SECONDS = 240  # for the whole run; examples past it are skipped, and counted as such


@pytest.mark.slow
def test_the_api_survives_schemathesis(tiny_corpus, tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    app = create_app(Settings(index_dir=tmp_path / "index", conversations_db=tmp_path / "conversations.sqlite"),
                     service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    checks = {
        GenerationMode.POSITIVE: [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        # Data outside the schema must be refused, never crash the server, and be refused in the documented shape.
        GenerationMode.NEGATIVE: [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    }
    examples: Counter = Counter()
    statuses: Counter = Counter()
    failures: list[str] = []
    unsatisfiable: list[str] = []
    deadline = time.monotonic() + BUDGET_SECONDS

    with TestClient(app):  # runs the lifespan: the index and the conversation store are loaded for the fuzzer's own client
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for mode, mode_checks in checks.items():
                label = f"{operation.label} [{mode.value}]"

                def make_run(label=label, mode_checks=mode_checks, strategy=operation.as_strategy(generation_mode=mode)):
                    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                              suppress_health_check=list(HealthCheck))
                    @given(case=strategy)
                    def run(case):
                        if time.monotonic() > deadline:
                            examples["skipped (time budget)"] += 1
                            return
                        examples[label] += 1
                        try:
                            response = case.call()
                            statuses[response.status_code] += 1
                            case.validate_response(response, checks=mode_checks)
                        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together below
                            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:600]}")

                    return run

                try:
                    make_run()()
                except Unsatisfiable:  # e.g. GET /healthz takes nothing, so nothing can be sent outside its schema
                    unsatisfiable.append(label)

    total = sum(n for key, n in examples.items() if not key.startswith("skipped"))
    print(f"\nschemathesis: {len(operations)} operations, {total} examples, {len(failures)} failures; "
          f"statuses {dict(sorted(statuses.items()))}; per operation {dict(examples)}; no data possible for {unsatisfiable}")
    assert len(operations) >= 4
    assert not failures, "\n".join(failures[:20])
    assert not any(500 <= status < 600 for status in statuses)
