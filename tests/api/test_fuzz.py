"""Fuzzing every route in the app's own OpenAPI document with schemathesis: bad input never gets a 5xx.

Pull and push are left out: they reach for registries, and their address policy has its own
tests against a hostile registry.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import Server, start_server


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("fuzz"), {"OLLAMA_REGISTRIES": "registry.invalid"})
    yield srv
    srv.stop()


def test_no_route_answers_5xx_to_generated_input(fuzz_server: Server, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "run", fuzz_server.url + "/openapi/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "25", "--exclude-path-regex", "^/api/(pull|push)$", "--generation-deterministic"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    assert fuzz_server.alive()
