from __future__ import annotations

import json

import pytest
import torch

from parity.core.ssm import get_default_scan, set_default_scan
from parity.testing import golden_path


@pytest.fixture(scope="session")
def original_golden() -> dict:
    return torch.load(golden_path("original_small.pt"), weights_only=True)


@pytest.fixture(scope="session")
def notebook_golden() -> dict:
    return torch.load(golden_path("notebook_small.pt"), weights_only=True)


@pytest.fixture(scope="session")
def lr_schedules() -> dict:
    return json.loads(golden_path("lr_schedules.json").read_text())


@pytest.fixture(params=["ref", "chunked", "compiled"])
def scan(request):
    """Run the test once with each CPU scan as the default of every Mamba mixer."""
    before = get_default_scan()
    set_default_scan(request.param)
    yield request.param
    set_default_scan(before)

