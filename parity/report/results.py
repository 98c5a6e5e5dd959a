"""Load what the matrix runner wrote into pandas DataFrames.

A RUNS_DIR is one matrix folder (it holds matrix.json) or a folder of them, at any depth. Every
variant x seed of every matrix gets a row whatever happened to it (done, failed, running, missing,
skipped), so the report can list what did not finish instead of silently dropping it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import ParityError
from ..core.store import read_json
from ..experiment.kinds import REPORT_ORDER
from ..runtime.rundir import RunDir
from .tables import missing

MATRIX_FILE = "matrix.json"
# Metric subtrees about the machine, not the model: matrix.json records the environment already.
NOT_FLATTENED = ("environment",)


@dataclass
class Results:
    root: Path  # the RUNS_DIR as given
    matrices: pd.DataFrame  # one row per matrix folder
    runs: pd.DataFrame  # one row per (matrix, variant, seed)
    histories: pd.DataFrame  # one row per history.jsonl line


# ------------------------------------------------------------------------------------------ finding


def find_matrices(path) -> list[Path]:
    """Matrix folders in or under ``path`` (``path`` itself when it holds matrix.json)."""
    path = Path(path)
    if not path.exists():
        raise ParityError(f"{path} does not exist: pass the folder `parity ablate --out` wrote (default runs)")
    if not path.is_dir():
        raise ParityError(f"{path} is not a folder: pass the folder `parity ablate --out` wrote (default runs)")
    found = []
    for folder, subdirs, files in os.walk(path):
        if MATRIX_FILE in files:
            found.append(Path(folder))
            subdirs.clear()  # below a matrix are its run folders, not more matrices
        subdirs.sort()
    if not found:
        raise ParityError(f"no {MATRIX_FILE} in or under {path}: run `parity ablate` first, or pass the folder "
                          "it wrote its matrices to")
    return sorted(found)


def load_matrix(folder: Path) -> dict:
    """matrix.json, checked for the two keys everything else relies on."""
    spec = _read_or_error(folder / MATRIX_FILE)
    if not isinstance(spec, dict) or not isinstance(spec.get("variants"), list):
        raise ParityError(f"{folder / MATRIX_FILE} has no 'variants' list: rerun `parity ablate` to rewrite it")
    if spec.get("kind") not in REPORT_ORDER:
        raise ParityError(f"{folder / MATRIX_FILE}: unknown matrix kind {spec.get('kind')!r}; expected one of "
                          f"{', '.join(REPORT_ORDER)}")
    return spec


def matrix_name(root: Path, folder: Path) -> str:
    """The matrix folder relative to RUNS_DIR; its own name when RUNS_DIR is the matrix."""
    relative = folder.relative_to(root)
    return relative.as_posix() if relative.parts else folder.resolve().name


# ------------------------------------------------------------------------------------------ loading


def load_results(path) -> Results:
    root = Path(path)
    matrices, runs, histories = [], [], []
    for folder in find_matrices(root):
        spec = load_matrix(folder)
        name = matrix_name(root, folder)
        matrices.append(_matrix_row(name, folder, spec))
        for variant in spec["variants"]:
            for seed in spec.get("seeds") or [0]:
                row = _run_row(folder, variant, seed)
                runs.append({"matrix": name, "kind": spec["kind"], **row})
                histories += [{"matrix": name, "variant": variant["id"], "role": row["role"], "seed": seed,
                               "state": row["state"], **h}
                              for h in read_history(RunDir(row["run_dir"]).history_file)]
    # matrices in the report's order of kinds, then by folder name
    matrices.sort(key=lambda m: (REPORT_ORDER.index(m["kind"]), m["matrix"]))
    return Results(root, pd.DataFrame(matrices), pd.DataFrame(runs), _history_frame(histories))


def _matrix_row(name: str, folder: Path, spec: dict) -> dict:
    return {"matrix": name, "dir": folder, "kind": spec["kind"], "preset": spec.get("preset"),
            "seeds": list(spec.get("seeds") or [0]), "command": spec.get("command"), "created": spec.get("created"),
            "environment": spec.get("environment") or {}, "setting": spec.get("setting") or {},
            "variants": spec["variants"], "groups": spec.get("groups"), "references": spec.get("references"),
            "baselines": spec.get("baselines") or {}, "preset_description": spec.get("preset_description"),
            "overrides": spec.get("overrides") or []}


def _run_row(folder: Path, variant: dict, seed: int) -> dict:
    run_dir = folder / variant["id"] / f"seed-{seed}"
    row = {"variant": variant["id"], "label": variant.get("label") or variant["id"],
           "base": variant.get("base"), "role": variant.get("role") or "variant",
           "toggles": tuple(variant.get("toggles") or ()), "skipped": variant.get("skipped"),
           "seed": seed, "run_dir": run_dir}
    row.update(_run_state(run_dir, variant.get("skipped")))
    metrics = _read_or_none(RunDir(run_dir).metrics_file) if row["state"] == "done" else None
    row["metrics"] = metrics or {}
    row.update(flatten({k: v for k, v in (metrics or {}).items() if k not in NOT_FLATTENED}))
    samples = run_dir / "samples.png"
    row["samples"] = samples if samples.is_file() else None
    # parts of a finished run the report reads beyond its metrics: named in the report when absent
    history = RunDir(run_dir).history_file
    row["missing_parts"] = [name for name, there in (("history.jsonl", history.is_file() and history.stat().st_size),
                                                     ("samples.png", row["samples"] is not None))
                            if not there] if row["state"] == "done" else []
    return row


def _run_state(run_dir: Path, skipped: str | None) -> dict:
    """state, error, step, total_steps, losses: from status.json, cross-checked with metrics.json."""
    out = {"state": "skipped", "error": skipped, "step": None, "total_steps": None, "losses": None}
    if skipped:
        return out
    if not run_dir.is_dir():
        return {**out, "state": "missing", "error": "no run folder: never started (rerun `parity ablate`)"}
    run = RunDir(run_dir)
    try:
        status = run.status()
    except ParityError as e:
        return {**out, "state": "failed", "error": str(e)}
    if not isinstance(status, dict):
        return {**out, "state": "failed", "error": f"{run.status_file} is not a status object: delete it"}
    has_metrics = run.metrics_file.is_file()
    if has_metrics:
        problem = run.metrics_problem()
        if problem:
            return {**out, "state": "failed", "step": status.get("step"), "total_steps": status.get("total_steps"),
                    "error": f"metrics.json {problem}: rerun `parity ablate` to evaluate the run again"}
    state = status.get("state") or ("done" if has_metrics else "unknown")
    error = status.get("error")
    if has_metrics and state != "done":  # metrics.json is the commit point: killed before status.json caught up
        state, error = "done", None
    if state == "done" and not has_metrics:
        state, error = "failed", "status.json says done but metrics.json is missing"
    return {"state": state, "error": error, "step": status.get("step"), "total_steps": status.get("total_steps"),
            "losses": status.get("losses")}


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'test': {'psnr': x}} -> {'test.psnr': x}; lists and scalars are kept as they are."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written by a live run; the rest is still good
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _history_frame(rows: list[dict]) -> pd.DataFrame:
    columns = ["matrix", "variant", "role", "seed", "state", "step", "test_psnr"]
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype=float)
    return frame


def _read_or_error(path: Path):
    spec = read_json(path)
    if spec is None:
        raise ParityError(f"{path} is missing: rerun `parity ablate` to rewrite it")
    return spec


def _read_or_none(path: Path):
    try:
        return read_json(path)
    except ParityError:
        return None


# ------------------------------------------------------------------------------------------ summaries


def summarise(values) -> dict:
    """mean, std (sample; 0 with one value), min, max, n of a list or {seed: value} dict."""
    values = [float(v) for v in (values.values() if isinstance(values, dict) else values)
              if v is not None and not math.isnan(float(v))]
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n}


def seed_mean(values: dict) -> float | None:
    """The mean of a {seed: value} dict's numbers (nan and None left out); None when it has none."""
    values = [v for v in values.values() if not missing(v)]
    return math.fsum(values) / len(values) if values else None


def done_values(runs: pd.DataFrame, variant: str, column: str) -> dict[int, float]:
    """{seed: value} over the finished runs of one variant (runs of one matrix)."""
    if column not in runs:
        return {}
    rows = runs[(runs["variant"] == variant) & (runs["state"] == "done")]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if v is not None and pd.notna(v)}


def done_lists(runs: pd.DataFrame, variant: str, column: str) -> dict[int, list[float]]:
    """{seed: list} over the finished runs of one variant, for per-image columns (test.per_image.psnr)."""
    if column not in runs:
        return {}
    rows = runs[(runs["variant"] == variant) & (runs["state"] == "done")]
    return {int(s): [float(x) for x in v] for s, v in zip(rows["seed"], rows[column]) if isinstance(v, list)}


def variant_summary(runs: pd.DataFrame, variants: list[dict]) -> pd.DataFrame:
    """Per variant of one matrix (in the matrix's order): seeds done and mean/std of the headline metrics."""
    rows = []
    for variant in variants:
        vid = variant["id"]
        mine = runs[runs["variant"] == vid]
        done = mine[mine["state"] == "done"]
        row = {"variant": vid, "label": variant.get("label") or vid, "role": variant.get("role") or "variant",
               "base": variant.get("base"), "skipped": variant.get("skipped") or "", "done": len(done),
               "seeds": len(mine), "run_dir": mine["run_dir"].iloc[0].parent if len(mine) else None}
        for key, column in (("psnr", "test.psnr"), ("headline", "test.psnr_headline"), ("ssim", "test.ssim"),
                            ("params", "params"), ("images_per_s", "train_images_per_s")):
            stats = summarise(done_values(runs, vid, column))
            row[f"{key}_mean"], row[f"{key}_std"] = stats["mean"], stats["std"]
        forms = done["test.psnr_form"].dropna().unique() if "test.psnr_form" in done else []
        row["psnr_form"] = ", ".join(str(f) for f in forms)
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["MATRIX_FILE", "Results", "done_lists", "done_values", "find_matrices", "flatten", "load_matrix",
           "load_results", "matrix_name", "read_history", "seed_mean", "summarise", "variant_summary"]
