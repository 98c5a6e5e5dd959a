"""Compact records: finished runs without checkpoints, copied incrementally, merged across machines."""

import json

import pytest

from parity.cli import main
from parity.core.errors import ParityError
from parity.runtime.records import copy_records


def _run(folder, state="done", metrics=True):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("name: x\n")
    (folder / "checkpoint.pt").write_bytes(b"weights")
    (folder / ".lock").write_text("1")
    (folder / "status.json").write_text(json.dumps({"state": state}))
    (folder / "history.jsonl").write_text('{"step": 1}\n')
    if metrics:
        (folder / "metrics.json").write_text(json.dumps({"test": {"psnr": 20.0}, "steps": 1}))


def test_records_keep_finished_runs_without_checkpoints(tmp_path):
    runs = tmp_path / "a"
    (runs / "m").mkdir(parents=True)
    (runs / "m" / "matrix.json").write_text("{}")
    _run(runs / "m" / "v" / "seed-0")
    _run(runs / "m" / "v" / "seed-1", state="running", metrics=False)
    out = tmp_path / "records"
    assert copy_records(runs, out) == {"runs": 1, "copied": 5}
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert kept == ["m/matrix.json", "m/v/seed-0/config.yaml", "m/v/seed-0/history.jsonl",
                    "m/v/seed-0/metrics.json", "m/v/seed-0/status.json"]
    assert copy_records(runs, out)["copied"] == 0  # incremental: nothing changed, nothing written
    other = tmp_path / "b"  # another machine's folder with the other seed: both merge into one
    _run(other / "m" / "v" / "seed-1")
    assert copy_records(other, out)["runs"] == 2


def test_records_refuse_a_folder_inside_the_runs(tmp_path):
    _run(tmp_path / "m" / "v" / "seed-0")
    with pytest.raises(ParityError, match="outside the runs"):
        copy_records(tmp_path, tmp_path / "records")
    assert main(["records", str(tmp_path / "missing"), str(tmp_path / "r")]) == 2
