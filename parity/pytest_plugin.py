"""pytest plugin: the parity fixtures, for your own test suite.

Installing the package registers it (entry point ``pytest11: parity``); from a source checkout, load it
with ``pytest -p parity.pytest_plugin``.

Fixtures:
- ``parity_golden_original``, ``parity_golden_notebook``: the golden dicts (see parity/golden/README.md);
- ``parity_original_model``, ``parity_notebook_model``: the golden-sized models with the golden weights
  loaded strictly (a fresh model per test);
- ``parity_baseline_config``: a factory, ``name[, preset] -> ExperimentConfig`` ('notebook', 'original',
  'notebook+coords', ...; preset 'smoke' for scaled-down models);
- ``parity_checkpoint``: the model of ``--parity-checkpoint PATH`` (a ``parity.evaluation.diagnose.LoadedModel``);
  tests marked ``@pytest.mark.parity_checkpoint`` are skipped when the option is not given.

Imports stay inside the fixtures: pytest loads an installed plugin in every run, so importing torch
here would slow down every test suite in the environment.
"""

from __future__ import annotations

import sys

import pytest

ENTRY_POINT = "parity"  # the plugin's name under [project.entry-points.pytest11]
CHECKPOINT_SKIP = ("needs --parity-checkpoint PATH (a `parity train` checkpoint.pt, a trans-inr checkpoint or a "
                   "notebook state dict)")


def pytest_addhooks(pluginmanager):
    # Loaded with -p parity.pytest_plugin where the package is also installed: pytest would then
    # register this module a second time through the entry point (a ValueError); block that name.
    if pluginmanager.get_name(sys.modules[__name__]) != ENTRY_POINT:
        pluginmanager.set_blocked(ENTRY_POINT)


def pytest_addoption(parser):
    group = parser.getgroup("parity", "MAMBA-GINR parity toolkit")
    group.addoption("--parity-checkpoint", metavar="PATH", default=None,
                    help="checkpoint whose model the parity_checkpoint fixture loads")


def pytest_configure(config):
    config.addinivalue_line("markers", "parity_checkpoint: runs on the model of --parity-checkpoint PATH "
                                       "(fixture parity_checkpoint); skipped without the option")


def pytest_collection_modifyitems(config, items):
    if config.getoption("parity_checkpoint"):
        return
    skip = pytest.mark.skip(reason=CHECKPOINT_SKIP)
    for item in items:
        if item.get_closest_marker("parity_checkpoint"):
            item.add_marker(skip)


def _load_golden(name: str) -> dict:
    import torch

    from parity.testing import golden_path

    return torch.load(golden_path(name), map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def parity_golden_original() -> dict:
    """original_small.pt: spec, state_dict, images and every intermediate of the original's sources."""
    return _load_golden("original_small.pt")


@pytest.fixture(scope="session")
def parity_golden_notebook() -> dict:
    """notebook_small.pt: kwargs, state_dict, images and every intermediate of the notebook's cells."""
    return _load_golden("notebook_small.pt")


@pytest.fixture
def parity_original_model(parity_golden_original):
    import original_port

    g = parity_golden_original
    return original_port.from_spec({**g["spec"], "sd": g["state_dict"]})


@pytest.fixture
def parity_notebook_model(parity_golden_notebook):
    import notebook_port
    from parity.core.checkpoints import load_state_dict_strict

    g = parity_golden_notebook
    model = notebook_port.MambaGINR_CIFAR(**g["kwargs"])
    load_state_dict_strict(model, g["state_dict"], source="golden notebook_small.pt")
    return model


@pytest.fixture
def parity_baseline_config():
    """``make(name, preset=None)``: the configuration a name describes, a fresh copy per call."""
    from parity.experiment.differences import named_config
    from parity.experiment.presets import preset as get_preset

    def make(name: str = "notebook", preset: str | None = None):
        return named_config(name, get_preset(preset).baselines() if preset else None)

    return make


@pytest.fixture
def parity_checkpoint(request):
    """The --parity-checkpoint model: ``.model`` (weights loaded strictly), ``.kind``, ``.config``
    (for a parity run), ``.image_size``."""
    path = request.config.getoption("parity_checkpoint")
    if not path:
        pytest.skip(CHECKPOINT_SKIP)
    from parity.core.errors import ParityError
    from parity.evaluation.diagnose import load_checkpoint_model

    try:
        return load_checkpoint_model(path)
    except ParityError as e:
        pytest.fail(f"--parity-checkpoint: {e}", pytrace=False)
