"""Run-folder names and the files the harness writes."""

import os
import stat

import pytest

from parity.core.store import atomic_write_text, safe_folder_name


@pytest.mark.parametrize("name, expected", [
    ("notebook+coords", "notebook+coords"),
    ("/abs/cfgs/imgrec cifar10.yaml", "abs-cfgs-imgrec-cifar10.yaml"),
    ("../../escape", "escape"),
    ("..", "run"),
    ("", "run"),
])
def test_safe_folder_name_stays_inside(tmp_path, name, expected):
    assert safe_folder_name(name) == expected
    assert (tmp_path / safe_folder_name(name)).resolve().parent == tmp_path.resolve()


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_transinr_configs_are_named_after_the_file_stem(tmp_path):
    import yaml

    from original_port.configs import CIFAR10_CONFIG
    from parity.experiment.configfile import load_yaml

    path = tmp_path / "sub dir" / "imgrec_cifar10.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(CIFAR10_CONFIG))
    assert load_yaml(path).name == "imgrec_cifar10"
