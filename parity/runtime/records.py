"""Compact run records: what a study's report is computed from, small enough to commit beside it.

A record is a run folder without its checkpoint (and without its lock): config.yaml, metrics.json (per-image
values included), history.jsonl, status.json and samples.png, under the same matrix/variant/seed layout with
each matrix's matrix.json (or a pilot's pilot.json), so ``parity report`` reads records as it reads runs.
Copying is incremental and atomic per file, so records can be refreshed (and committed) while runs finish,
and records from several machines (a cluster's folders) merge into one folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.errors import ParityError
from .rundir import RunDir

RECORD_FILES = ("config.yaml", "metrics.json", "history.jsonl", "status.json", "samples.png")
MANIFESTS = ("matrix.json", "pilot.json")


def _copy_if_changed(src: Path, dst: Path) -> bool:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True


def copy_records(runs_dir, out) -> dict[str, int]:
    """Copy every finished run's record (and each manifest) from ``runs_dir`` into ``out``; unfinished runs
    are left out (their record would change). Returns {'runs': records now in out, 'copied': files written}."""
    src, out = Path(runs_dir), Path(out)
    if not src.is_dir():
        raise ParityError(f"{src} is not a folder: pass the folder `parity ablate --out` wrote")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ParityError(f"--records {out} is inside {src}: write records to a folder outside the runs")
    copied = runs = 0
    for folder, subdirs, files in os.walk(src):
        subdirs.sort()
        here = Path(folder)
        target = out / here.relative_to(src)
        for name in MANIFESTS:
            if name in files:
                copied += _copy_if_changed(here / name, target / name)
        if "metrics.json" in files and RunDir(here).is_done():
            runs += 1
            for name in RECORD_FILES:
                if (here / name).is_file():
                    copied += _copy_if_changed(here / name, target / name)
    if not runs and not any(out.rglob("matrix.json")) and not any(out.rglob("pilot.json")):
        raise ParityError(f"no finished runs under {src}: run `parity ablate` first")
    return {"runs": sum(1 for _ in out.rglob("metrics.json")), "copied": copied}


__all__ = ["RECORD_FILES", "copy_records"]
