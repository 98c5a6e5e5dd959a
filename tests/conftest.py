from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from parity.ssm import get_default_scan, set_default_scan

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


@pytest.fixture(scope="session")
def original_golden() -> dict:
    return torch.load(GOLDEN / "original_small.pt", weights_only=True)


@pytest.fixture(scope="session")
def notebook_golden() -> dict:
    return torch.load(GOLDEN / "notebook_small.pt", weights_only=True)


@pytest.fixture(scope="session")
def lr_schedules() -> dict:
    return json.loads((GOLDEN / "lr_schedules.json").read_text())


@pytest.fixture(params=["ref", "chunked"])
def scan(request):
    """Run the test once with each CPU scan as the default of every Mamba mixer."""
    before = get_default_scan()
    set_default_scan(request.param)
    yield request.param
    set_default_scan(before)

