"""parity.report on a fake RUNS_DIR built in tmp_path: one matrix of each kind, two seeds, synthetic
metrics whose effects are computed by hand, one failed run and skipped variants."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from parity.differences import NOT_IN_SEED
from parity.errors import ParityError
from parity.report import write_report
from parity.report.effects import (CONFIRMED, CONTRADICTED, MISSED, NOT_MEASURABLE, OVERSTATED, UNDERSTATED,
                                   compute_effects, judge)
from parity.report.results import find_matrices, load_results

SEEDS = (0, 1)
ENV = {"torch": "2.4.0", "python": "3.11.9", "machine": "x86_64", "threads": 2, "cpu_count": 2, "parity": "0.1.0"}
SETTING = {"dataset": "procedural", "image_size": 16, "train_subset": 96, "test_subset": 32, "max_steps": 20,
           "epochs (notebook, original)": [2, 4]}
DIVERGED = "loss is nan at step 7"

# ------------------------------------------------------------------------------------------ fake runs


def variant(vid, toggles=(), base="notebook", role="variant", skipped=None):
    return {"id": vid, "label": vid, "toggles": list(toggles), "base": base, "role": role, "skipped": skipped}


def metrics(psnr, form, seed):
    """Synthetic metrics.json: the batch-MSE PSNR sits 0.6 dB under the per-image one."""
    batch = psnr - 0.6
    return {"test": {"psnr": psnr, "psnr_batch_mse": batch, "mse": 10 ** (-psnr / 10), "ssim": 0.8, "images": 32,
                     "psnr_form": form, "psnr_headline": psnr if form == "per-image" else batch},
            "jitter": {"same": {"0.0": psnr, "0.005": psnr - 0.5, "0.01": psnr - 1.5}, "decoupled": {}},
            "sr_notebook": {"32": {"psnr": psnr - 3, "ssim": 0.6}, "64": {"psnr": psnr - 4, "ssim": 0.5}},
            "sr_true": {"psnr": psnr - 2, "ssim": 0.7, "bicubic_psnr": psnr - 2.5, "bicubic_ssim": 0.65, "factor": 2},
            "probe": None, "params": 12345, "gflop_per_image": 0.01, "train_images_per_s": 100.0, "peak_rss_mb": 500.0,
            "steps": 20, "epochs": 1, "train_time_s": 3.0, "seed": seed, "environment": ENV}


def write_run(run_dir: Path, psnr, form: str, seed: int, baseline: bool) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: x\n")
    history = [{"step": 10, "epoch": 0, "lr": 1e-4, "train_loss": 0.05, "test_psnr": None},
               {"step": 15, "epoch": 0, "lr": 1e-4, "train_loss": 0.04, "test_psnr": (psnr or 10) - 1},
               {"step": 20, "epoch": 1, "lr": 1e-4, "train_loss": 0.03, "test_psnr": psnr or 10}]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history) + '{"step": 2')
    if psnr is None:  # the failed run: diverged, with its last losses
        status = {"state": "failed", "error": DIVERGED, "step": 7, "total_steps": 20, "losses": [0.1, 0.5, math.nan]}
        (run_dir / "status.json").write_text(json.dumps(status))
        return
    (run_dir / "status.json").write_text(json.dumps({"state": "done", "step": 20, "total_steps": 20}))
    (run_dir / "metrics.json").write_text(json.dumps(metrics(psnr, form, seed)))
    if baseline:
        Image.new("RGB", (32, 16), (200, 30, 60)).save(run_dir / "samples.png")


def make_matrix(root: Path, kind: str, variants: list[dict], psnrs: dict, forms: dict) -> Path:
    """matrix.json plus one run per (variant, seed); psnrs[variant][seed] None means that run failed."""
    folder = root / f"smoke-{kind}"
    folder.mkdir(parents=True)
    spec = {"kind": kind, "preset": "smoke", "seeds": list(SEEDS), "command": f"parity ablate --matrix {kind}",
            "created": "2025-01-01T00:00:00", "environment": ENV, "setting": SETTING, "variants": variants}
    (folder / "matrix.json").write_text(json.dumps(spec))
    for v in variants:
        if v["skipped"]:
            continue
        for seed in SEEDS:
            write_run(folder / v["id"] / f"seed-{seed}", psnrs[v["id"]][seed], forms.get(v["id"], "batch-mse"), seed,
                      v["role"] == "baseline")
    return folder


def one_at_a_time(root):
    variants = [variant("notebook", role="baseline")] + [
        variant(f"notebook+{d}", [d]) for d in ("patch-size", "decoder", "spatial-bias", "depth", "num-lp",
                                                "lr-horizon", "psnr-aggregation", "warmup")]
    variants.append(variant("notebook+pos-code", ["pos-code"], skipped="requires model.x=y (is z)"))
    psnrs = {"notebook": [20.0, 21.0], "notebook+patch-size": [21.5, 22.3], "notebook+decoder": [20.5, 21.5],
             "notebook+spatial-bias": [19.0, 20.0], "notebook+depth": [20.05, 21.0], "notebook+num-lp": [20.5, 21.3],
             "notebook+lr-horizon": [20.8, 21.8], "notebook+psnr-aggregation": [20.0, 21.0],
             "notebook+warmup": [20.6, None]}
    return make_matrix(root, "one-at-a-time", variants, psnrs, {"notebook+psnr-aggregation": "per-image"})


def leave_one_out(root):
    variants = [variant("original", base="original", role="baseline"),
                variant("original-patch-size", ["patch-size"], base="original"),
                variant("original-depth", ["depth"], base="original")]
    psnrs = {"original": [25.0, 25.4], "original-patch-size": [24.0, 24.2], "original-depth": [25.0, 25.5]}
    return make_matrix(root, "leave-one-out", variants, psnrs, {v["id"]: "per-image" for v in variants})


def cumulative(root):
    steps = ["decoder", "spatial-bias", "modulation-entry", "pixel-sampling"]
    variants = [variant("step-00-notebook", role="baseline")]
    for k, d in enumerate(steps, start=1):
        skipped = "no effect here: requires model.decoder=notebook (is lainr)" if d == "modulation-entry" else None
        variants.append(variant(f"step-{k:02d}-{d}", steps[:k], skipped=skipped))
    psnrs = {"step-00-notebook": [20.0, 21.0], "step-01-decoder": [22.0, 23.0], "step-02-spatial-bias": [22.5, 23.3],
             "step-04-pixel-sampling": [24.5, 25.3]}
    return make_matrix(root, "cumulative", variants, psnrs, {})


def improvements(root):
    variants = [variant("original", base="original", role="baseline")] + [
        variant(f"original+{i}", [i], base="original") for i in ("fix-batch0-coords", "jitter-train", "final-residual")]
    psnrs = {"original": [25.0, 25.4], "original+fix-batch0-coords": [25.0, 25.45],
             "original+jitter-train": [24.0, 24.6], "original+final-residual": [25.5, 25.9]}
    return make_matrix(root, "improvements", variants, psnrs, {v["id"]: "per-image" for v in variants})


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake") / "runs"
    for build in (one_at_a_time, leave_one_out, cumulative, improvements):
        build(root)
    return root


@pytest.fixture(scope="module")
def effects(runs_dir):
    return compute_effects(load_results(runs_dir))


@pytest.fixture(scope="module")
def report(runs_dir, tmp_path_factory) -> Path:
    return write_report(runs_dir, tmp_path_factory.mktemp("out") / "docs" / "smoke.md")


def effect(effects, kind, diff_id):
    rows = effects[(effects["kind"] == kind) & (effects["difference"] == diff_id)]
    assert len(rows) == 1, (kind, diff_id)
    return rows.iloc[0]


# ------------------------------------------------------------------------------------------ loading


def test_missing_folder_raises(tmp_path):
    with pytest.raises(ParityError, match="does not exist"):
        find_matrices(tmp_path / "nowhere")


def test_folder_without_matrix_raises(tmp_path):
    (tmp_path / "empty" / "notebook").mkdir(parents=True)
    with pytest.raises(ParityError, match="no matrix.json"):
        find_matrices(tmp_path / "empty")


def test_results_one_row_per_variant_and_seed(runs_dir):
    results = load_results(runs_dir)
    assert len(results.matrices) == 4
    runs = results.runs
    one = runs[runs["matrix"] == "smoke-one-at-a-time"]
    assert len(one) == 10 * len(SEEDS)  # skipped variant kept: one row per seed
    failed = one[(one["variant"] == "notebook+warmup") & (one["seed"] == 1)].iloc[0]
    assert failed["state"] == "failed" and failed["error"] == DIVERGED and failed["step"] == 7
    assert set(one[one["variant"] == "notebook+pos-code"]["state"]) == {"skipped"}
    done = one[(one["variant"] == "notebook") & (one["seed"] == 1)].iloc[0]
    assert done["test.psnr"] == 21.0 and done["sr_true.factor"] == 2 and "environment.torch" not in one
    # the truncated last history line is skipped, the unevaluated step kept as NaN
    history = results.histories
    assert len(history[(history["variant"] == "notebook") & (history["seed"] == 0)]) == 3


def test_matrix_folder_itself_is_a_runs_dir(runs_dir):
    folder = runs_dir / "smoke-leave-one-out"
    assert find_matrices(folder) == [folder]
    assert set(load_results(folder).runs["matrix"]) == {"smoke-leave-one-out"}


# ------------------------------------------------------------------------------------------ effects


def test_one_at_a_time_effects_by_hand(effects):
    row = effect(effects, "one-at-a-time", "patch-size")  # 21.5-20.0, 22.3-21.0
    assert row["values"] == pytest.approx({0: 1.5, 1: 1.3})
    assert row["mean"] == pytest.approx(1.4) and row["std"] == pytest.approx(math.sqrt(0.02))
    assert (row["min"], row["max"], row["n"]) == (pytest.approx(1.3), pytest.approx(1.5), 2)
    assert row["verdict"] == UNDERSTATED  # claimed MODERATE, measured large
    assert effect(effects, "one-at-a-time", "decoder")["verdict"] == OVERSTATED  # MASSIVE, 0.5 dB
    assert effect(effects, "one-at-a-time", "spatial-bias")["verdict"] == CONTRADICTED  # -1 dB
    assert effect(effects, "one-at-a-time", "depth")["verdict"] == NOT_MEASURABLE  # 0.05, 0.0
    assert effect(effects, "one-at-a-time", "num-lp")["verdict"] == CONFIRMED  # 0.4 ± 0.14: moderate
    assert effect(effects, "one-at-a-time", "lr-horizon")["verdict"] == MISSED


def test_evaluation_differences_use_the_headline(effects):
    row = effect(effects, "one-at-a-time", "psnr-aggregation")
    # per-image PSNR is unchanged; the headline moves from batch-MSE (psnr - 0.6) to per-image
    assert row["metric"] == "test.psnr_headline"
    assert row["mean"] == pytest.approx(0.6) and row["claimed"] == NOT_IN_SEED and row["verdict"] == MISSED


def test_failed_and_skipped_runs_are_kept(effects):
    warmup = effect(effects, "one-at-a-time", "warmup")
    assert warmup["n"] == 1 and warmup["seeds_missing"] == [1] and warmup["std"] == 0
    assert warmup["basis"].startswith("one seed") and warmup["verdict"] == CONFIRMED
    skipped = effect(effects, "one-at-a-time", "pos-code")
    assert skipped["n"] == 0 and skipped["verdict"].startswith("not run (skipped: requires")


def test_leave_one_out_sign(effects):
    row = effect(effects, "leave-one-out", "patch-size")  # 25.0-24.0, 25.4-24.2
    assert row["mean"] == pytest.approx(1.1) and row["verdict"] == UNDERSTATED
    assert effect(effects, "leave-one-out", "depth")["verdict"] == NOT_MEASURABLE


def test_cumulative_step_gains(effects):
    assert effect(effects, "cumulative", "decoder")["mean"] == pytest.approx(2.0)
    assert effect(effects, "cumulative", "decoder")["verdict"] == CONFIRMED
    spatial = effect(effects, "cumulative", "spatial-bias")  # 0.5, 0.3 over step 1
    assert spatial["mean"] == pytest.approx(0.4) and spatial["verdict"] == OVERSTATED
    assert effect(effects, "cumulative", "modulation-entry")["verdict"].startswith("not run (skipped")
    pixels = effect(effects, "cumulative", "pixel-sampling")  # against step 2: the skipped step changed nothing
    assert pixels["reference"] == "step-02-spatial-bias" and pixels["mean"] == pytest.approx(2.0)
    assert "modulation-entry" in pixels["note"]


def test_improvements(effects):
    assert effect(effects, "improvements", "fix-batch0-coords")["verdict"] == NOT_MEASURABLE
    jitter = effect(effects, "improvements", "jitter-train")  # -1.0, -0.8; the seed says CRITICAL
    assert jitter["mean"] == pytest.approx(-0.9) and jitter["verdict"] == CONTRADICTED
    assert effect(effects, "improvements", "final-residual")["verdict"] == MISSED


@pytest.mark.parametrize("mean, std, n, claim, expected", [
    (1.5, 0.1, 2, "MODERATE", UNDERSTATED),
    (0.5, 0.0, 2, "MASSIVE", OVERSTATED),
    (0.5, 0.0, 2, "MODERATE", CONFIRMED),
    (0.2, 0.0, 3, "MINOR", CONFIRMED),
    (0.15, 0.1, 2, "MINOR", NOT_MEASURABLE),  # inside 2 std
    (0.15, 0.0, 1, "MINOR", CONFIRMED),  # one seed: only the floor
    (20.1 - 20.0, 0.0, 1, "MINOR", NOT_MEASURABLE),  # 0.1 dB give or take float rounding: on the floor
    (-0.5, 0.0, 2, "MODERATE", CONTRADICTED),
    (-0.5, 0.0, 2, NOT_IN_SEED, MISSED),
    (0.05, 0.0, 2, NOT_IN_SEED, NOT_MEASURABLE),
])
def test_verdicts(mean, std, n, claim, expected):
    assert judge(mean, std, n, claim)["verdict"] == expected


# ------------------------------------------------------------------------------------------ report


def test_report_tables_and_sections(report, runs_dir):
    text = report.read_text()
    assert text.startswith("# Parity report: runs")
    assert "parity ablate --matrix one-at-a-time" in text and "parity report " in text
    for heading in ("## Setting", "## one-at-a-time: `smoke-one-at-a-time`", "## cumulative: `smoke-cumulative`",
                    "## Differences the seed audit missed", "## Improvements", "## Defects of the original",
                    "## Failed and skipped runs", "## Plots", "## What this budget cannot show"):
        assert heading in text, heading
    assert "+1.40 ± 0.14 [+1.30, +1.50]" in text and UNDERSTATED in text
    assert "| difference" in text and "| variant" in text
    assert "20.50 ± 0.71" in text  # notebook's per-image PSNR over seeds 0 and 1
    assert "2/2 (skipped)" not in text and "0/2 (skipped)" in text
    assert text.index("## one-at-a-time") < text.index("## leave-one-out") < text.index("## cumulative")
    assert DIVERGED in text and "requires model.x=y (is z)" in text
    assert "20 steps" in text  # the budget paragraph read max_steps
    assert "not measurable" in text and "1 dB" in text  # the thresholds are printed


def test_report_links_resolve(report):
    text = report.read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text)
    assert targets
    for target in targets:
        assert (report.parent / target).exists(), target
    assert any("smoke-one-at-a-time/notebook" in t for t in targets)


def test_report_pngs_are_valid(report):
    files = report.parent / "smoke_files"
    pngs = sorted(files.glob("*.png"))
    names = {p.name.split("-smoke-")[0] for p in pngs}
    assert {"effects", "training", "staircase", "jitter", "sr", "samples"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.verify()
    with Image.open(files / "training-smoke-one-at-a-time.png") as image:
        assert image.size == (800, 500)


def test_report_default_out(runs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = write_report(runs_dir / "smoke-leave-one-out")
    assert out == tmp_path / "reports" / "smoke-leave-one-out.md"
    assert out.exists() and (tmp_path / "reports" / "smoke-leave-one-out_files").is_dir()
