"""parity.report on a fake RUNS_DIR built in tmp_path: one matrix of each kind, two seeds, synthetic
metrics whose effects are computed by hand, one failed run and skipped variants."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from parity.core.errors import ParityError
from parity.report import stats, write_report
from parity.report.effects import batch_mse_psnr, compute_effects
from parity.report.results import find_matrices, load_results

SEEDS = (0, 1)
ENV = {"torch": "2.4.0", "python": "3.11.9", "machine": "x86_64", "threads": 2, "cpu_count": 2, "parity": "0.1.0"}
DIVERGED = "loss is nan at step 7"
REFERENCES = {"constant_colour_db": 12.0, "per_image_mean_colour_db": 14.0, "bicubic_x2_db": 24.0, "images": 4}
FACTORIAL_GROUPS = ("decoder", "optimisation")


def _baselines():
    from parity.experiment.presets import preset

    nb, og = preset("smoke").baselines()
    nb.train.max_steps = og.train.max_steps = 20
    nb.eval.batch_size = 2
    return {"notebook": nb.to_dict(), "original": og.to_dict()}


BASELINES = _baselines()

# ------------------------------------------------------------------------------------------ fake runs


def variant(vid, toggles=(), base="notebook", role="variant", skipped=None):
    return {"id": vid, "label": vid, "toggles": list(toggles), "base": base, "role": role, "skipped": skipped}


PER_IMAGE_OFFSETS = (-3.0, -1.0, 1.0, 3.0)  # four test images around the run's mean PSNR


def metrics(psnr, form, seed):
    """Synthetic metrics.json: four per-image PSNRs around ``psnr``; the batch-MSE PSNR is computed from them
    (batches of 2) as the evaluator would."""
    per_image = [psnr + o for o in PER_IMAGE_OFFSETS]
    mse = [10 ** (-p / 10) for p in per_image]
    batch = batch_mse_psnr(mse, 2)
    return {"test": {"psnr": psnr, "psnr_batch_mse": batch, "mse": sum(mse) / 4, "ssim": 0.8, "images": 4,
                     "psnr_form": form, "psnr_headline": psnr if form == "per-image" else batch,
                     "per_image": {"psnr": per_image, "mse": mse, "ssim": [0.8] * 4}},
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
            "created": "2025-01-01T00:00:00", "environment": ENV, "variants": variants,
            "baselines": BASELINES, "references": REFERENCES, "preset_description": "a fake preset"}
    if kind == "factorial":
        spec["groups"] = list(FACTORIAL_GROUPS)
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


def factorial_matrix(root):
    """2x2 cells: decoder +2.0 / +2.2, optimisation +1.0 / +1.1, an interaction of +1.0 at seed 0."""
    cells = {(): [20.0, 21.0], ("decoder",): [22.0, 23.2], ("optimisation",): [21.0, 22.1],
             ("decoder", "optimisation"): [24.0, 25.3]}
    variants, psnrs = [], {}
    for cell, values in cells.items():
        vid = "with-" + ("+".join(cell) or "none")
        variants.append({**variant(vid, role="variant" if cell else "baseline"), "groups": list(cell)})
        psnrs[vid] = values
    return make_matrix(root, "factorial", variants, psnrs, {})


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake") / "runs"
    for build in (one_at_a_time, leave_one_out, cumulative, improvements, factorial_matrix):
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
    assert len(results.matrices) == 5
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
    assert row["mean"] == pytest.approx(1.4) and row["n"] == 2
    assert row["low"] <= row["mean"] <= row["high"]
    assert row["family"].startswith("test.psnr")  # pooled and Holm-adjusted with the matrix's other effects


def test_verdicts_follow_the_intervals(effects):
    judged = effects[effects["low"].notna()]
    assert len(judged) >= 5
    for row in judged.itertuples():
        measured = row.verdict not in (stats.NOT_MEASURED,)
        assert measured == bool(row.low > 0 or row.high < 0), row.difference
        assert (row.p_holm < stats.ALPHA) == measured, row.difference
    # a -1 dB effect at both seeds, against a claimed level: contradicted whenever it is measured
    spatial = effect(effects, "one-at-a-time", "spatial-bias")
    assert spatial["verdict"] in (stats.CONTRADICTED, stats.NOT_MEASURED)


def test_evaluation_side_difference_is_not_judged_on_training(effects):
    row = effect(effects, "one-at-a-time", "psnr-aggregation")
    # the variant scored the same per-image PSNRs as the notebook: bit-identical, with the reason
    assert row["values"] == {0: 0.0, 1: 0.0}
    assert row["verdict"].startswith(stats.NO_EFFECT) and "number reported" in row["verdict"]


def test_failed_and_skipped_runs_are_kept(effects):
    warmup = effect(effects, "one-at-a-time", "warmup")
    assert warmup["n"] == 1 and warmup["seeds_missing"] == [1]
    assert warmup["df"] > 1  # one seed, but the matrix's pooled seed variance gives it an interval
    skipped = effect(effects, "one-at-a-time", "pos-code")
    assert skipped["n"] == 0 and skipped["verdict"].startswith("not run (skipped: requires")


def test_leave_one_out_sign(effects):
    row = effect(effects, "leave-one-out", "patch-size")  # 25.0-24.0, 25.4-24.2
    assert row["mean"] == pytest.approx(1.1)


def test_cumulative_step_gains(effects):
    assert effect(effects, "cumulative", "decoder")["mean"] == pytest.approx(2.0)
    spatial = effect(effects, "cumulative", "spatial-bias")  # 0.5, 0.3 over step 1
    assert spatial["mean"] == pytest.approx(0.4)
    assert effect(effects, "cumulative", "modulation-entry")["verdict"].startswith("not run (skipped")
    pixels = effect(effects, "cumulative", "pixel-sampling")  # against step 2: the skipped step changed nothing
    assert pixels["reference"] == "step-02-spatial-bias" and pixels["mean"] == pytest.approx(2.0)
    assert "modulation-entry" in pixels["note"]


def test_improvements(effects):
    jitter = effect(effects, "improvements", "jitter-train")  # judged on PSNR under 0.01 jitter: -1.0, -0.8
    assert jitter["metric"] == "jitter.same.0.01" and jitter["mean"] == pytest.approx(-0.9)
    assert effect(effects, "improvements", "final-residual")["mean"] == pytest.approx(0.5)


def test_batch_mse_psnr_by_hand():
    assert batch_mse_psnr([0.01, 0.01, 0.001], 2) == pytest.approx((20 + 30) / 2)


# ------------------------------------------------------------------------------------------ report


def test_report_answers_first(report, runs_dir):
    text = report.read_text()
    assert text.startswith("# Parity report: smoke\n")  # named for the report written outside its runs folder
    assert "parity ablate --matrix one-at-a-time" in text and "parity report " in text
    headings = ["## The answer at this budget", "## Evaluation-side differences", "## leave-one-out",
                "## factorial", "## cumulative", "## one-at-a-time", "## improvements", "## Setting",
                "## How to read the effects", "## Improvements", "## Defects of the original",
                "## Failed and skipped runs", "## Plots", "## What this budget cannot show"]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    answer = text[:text.index("## Evaluation-side differences")]
    assert "**Gap: +4.15 dB**" in answer  # the factorial's corners: 24.0-20.0, 25.3-21.0
    assert "Regime." in answer and "above each image's mean colour" in answer
    assert "Attribution of the gap" in answer and "**+4.15**" in answer
    assert DIVERGED in text and "requires model.x=y (is z)" in text
    assert "20 steps" in text  # the budget paragraph read max_steps
    assert "Holm" in text  # the rule is printed


def test_attribution_adds_up_in_markdown_and_json(report):
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["seeds"] == 2 and summary["gap_db"] == pytest.approx(4.15)
    assert summary["baselines"]["notebook"]["psnr_per_image_db"] == pytest.approx(20.5)
    assert summary["baselines"]["original"]["psnr_per_image_db"] == pytest.approx(24.65)
    assert summary["references"]["constant_colour_db"] == 12.0
    assert summary["references"]["per_image_mean_colour_db"] == 14.0
    shares = {a["group"]: a for a in summary["attribution"]}
    assert set(shares) == set(FACTORIAL_GROUPS)
    assert sum(a["share_db"] for a in shares.values()) == pytest.approx(summary["gap_db"])
    for a in shares.values():
        assert a["ci_low_db"] <= a["share_db"] <= a["ci_high_db"]
    # decoder: (2.0 + 3.0) / 2 at seed 0 with the interaction split evenly; the same in the markdown
    assert shares["decoder"]["per_seed_db"]["0"] == pytest.approx(2.5)
    text = report.read_text()
    table = text[text.index("Attribution of the gap"):text.index("**The shares three ways.**")]
    shown = [float(x) for x in re.findall(r"\| `(?:decoder|optimisation)` +\| [^|]+\| ([+-][0-9.]+)", table)]
    assert len(shown) == 2 and sum(shown) == pytest.approx(4.15, abs=0.011)
    loo = {e["group"]: e for e in summary["factorials"][0]["group_leave_one_out"]}
    assert loo["decoder"]["effect_db"] == pytest.approx(3.1)  # 24.0-21.0, 25.3-22.1
    assert "Leave one group out, from the original" in text
    effects = {(e["kind"], e["difference"]): e for e in summary["effects"]}
    assert effects[("one-at-a-time", "patch-size")]["effect_db"] == pytest.approx(1.4)


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
    assert {"effects", "training", "staircase", "jitter", "sr", "samples", "attribution"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.verify()
    with Image.open(files / "training-smoke-one-at-a-time.png") as image:
        assert image.size == (800, 500)


def test_report_default_out_is_beside_the_runs(runs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = write_report(runs_dir / "smoke-leave-one-out")
    assert out == (runs_dir / "smoke-leave-one-out" / "report.md").resolve()
    assert out.exists() and out.with_suffix(".json").exists()
    assert not (tmp_path / "reports").exists()  # never into a tracked folder unless asked


@pytest.mark.parametrize("content", ["", '{"test": {"psnr": 2', '{"test": {"psnr": NaN}, "steps": 3}',
                                     '{"psnr": 21.0}', "[1, 2]", b"\xff\xfe{}"])
def test_corrupt_metrics_are_failed_runs_with_a_reason(tmp_path, content):
    folder = make_matrix(tmp_path, "leave-one-out", [variant("original", base="original", role="baseline")],
                         {"original": [25.0, 25.4]}, {})
    path = folder / "original" / "seed-1" / "metrics.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    runs = load_results(folder).runs
    bad = runs[runs["seed"] == 1].iloc[0]
    assert bad["state"] == "failed" and "metrics.json" in bad["error"] and "rerun" in bad["error"]
    assert runs[runs["seed"] == 0].iloc[0]["state"] == "done"
    failed = write_report(folder, tmp_path / "r.md").read_text().split("## Failed and skipped runs")[1]
    assert "metrics.json" in failed.split("##")[0]  # named in the report, not counted as done


def test_a_corrupt_metrics_file_is_set_aside_not_counted(tmp_path):
    from parity.runtime.rundir import RunDir

    run = RunDir(tmp_path)
    path = run.metrics_file
    path.write_text('{"test": {"psnr": 2')
    assert run.finished_metrics() is None
    assert not path.exists() and (tmp_path / "metrics.json.corrupt").exists()
    path.write_text(json.dumps({"test": {"psnr": 20.0}, "steps": 5}))
    assert run.finished_metrics()["steps"] == 5


def test_collapsed_runs_are_named_before_the_attribution(tmp_path):
    folder = make_matrix(tmp_path, "leave-one-out", [variant("original", base="original", role="baseline"),
                                                     variant("original-lr", ["lr"], base="original")],
                         {"original": [25.0, 25.4], "original-lr": [12.2, 24.9]}, {})
    out = write_report(folder, tmp_path / "r.md")
    text = out.read_text()
    answer = text[:text.index("## Evaluation-side")]
    assert "**Collapsed runs.** 1 finished run(s)" in answer and "`original-lr` (1 of 2 seeds, 12.20 dB)" in answer
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [(r["variant"], r["seed"]) for r in summary["collapsed_runs"]] == [("original-lr", 0)]
