"""Property: any single-byte change anywhere but the very last record is never reported intact."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.audit.verify import verify
from tests.audit.helpers import KEY, sample_log


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pristine")
    asyncio.run(sample_log(directory, hours=1))
    assert verify([directory], keys=[KEY.public]).status == "intact"
    return directory / "audit.jsonl"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(min_value=0.0, max_value=1.0, exclude_max=True), delta=st.integers(1, 255))
def test_single_byte_tampering_is_always_detected(pristine: Path, tmp_path_factory: pytest.TempPathFactory,
                                                  position: float, delta: int) -> None:
    data = bytearray(pristine.read_bytes())
    protected = data.rstrip(b"\n").rfind(b"\n") + 1  # the last record has no successor (documented limit)
    index = int(position * protected)
    data[index] = (data[index] + delta) % 256
    directory = tmp_path_factory.mktemp("tampered")
    (directory / "audit.jsonl").write_bytes(bytes(data))
    result = verify([directory], keys=[KEY.public])
    assert result.status != "intact", (index, delta)
    shutil.rmtree(directory)
