from __future__ import annotations

import json

import pytest
import torch

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


@pytest.fixture(params=["ref", "chunked", "compiled", "parallel"])
def scan(request):
    """Run the test once with each scan that runs on a CPU; the test puts its model on it (``set_scan``)."""
    return request.param
