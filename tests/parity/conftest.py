"""Fixtures shared by the harness tests: the smoke preset's scaled-down baselines and model."""

import pytest

from parity.experiment.build import build_model
from parity.experiment.presets import preset


@pytest.fixture(scope="module")
def smoke():
    """(notebook, original) configurations at the smoke preset's scale; every difference kept."""
    return preset("smoke").baselines()


@pytest.fixture(scope="module")
def notebook(smoke):
    return build_model(smoke[0]).eval()
