"""The intake endpoint as its OpenAPI document describes it, fuzzed from that document with
schemathesis: no server error, every status and body as documented, whatever is sent."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ace_email.services.intake import IntakeServer
from tests.conftest import Pipeline
from tests.e2e.test_intake_server import TOKEN, endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only, pytest.mark.timeout(300)]

ST = Path(sys.executable).parent / "st"
__all__ = ["endpoint"]


@pytest.fixture
async def served(
    endpoint: tuple[Pipeline, IntakeServer],
) -> AsyncIterator[IntakeServer]:
    yield endpoint[1]


async def test_the_endpoint_keeps_to_its_openapi_document_under_fuzzing(
    served: IntakeServer, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{served.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--max-examples",
        "40",
        "--seed",
        "4711",
        "--request-timeout",
        "60",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    report = out.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert "Tested: 2" in report and "No issues found" in report, report[-3000:]
