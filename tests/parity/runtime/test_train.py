"""One trainer for both protocols: schedules, protocols, determinism and exact resume."""

import json

import pytest
import torch

from parity.experiment.config import notebook_baseline, original_baseline
from parity.experiment.presets import preset
from parity.experiment.schedule import lr_for_epoch
from parity.runtime.train import DivergedError, train_run, training_batch


def test_schedules_match_the_sources(notebook_golden, lr_schedules):
    nb = notebook_baseline().train
    ours = [lr_for_epoch(nb, e) for e in range(1, 21)]
    assert max(abs(a - b) for a, b in zip(ours, notebook_golden["lr_per_epoch"])) <= 1e-12
    for name, expected in lr_schedules.items():
        base, epochs, warmup = name.split("_")[-3:]
        t = original_baseline().train
        t.lr, t.epochs, t.warmup_epochs = (float(base), int(epochs.removesuffix("ep")),
                                           int(warmup.removeprefix("warmup")))
        assert max(abs(lr_for_epoch(t, e) - x) for e, x in enumerate(expected, start=1)) <= 1e-12


def test_protocols_sample_or_cover_every_pixel():
    from parity.core.coords import make_grid

    images = torch.rand(3, 3, 8, 8)
    nb = notebook_baseline()
    nb.train.num_samples = 20
    coords, gt = training_batch(nb, images, make_grid(8, 8, "endpoints"), step=0)
    assert coords.shape == (3, 20, 2) and gt.shape == (3, 20, 3)
    orig = original_baseline()
    coords, gt = training_batch(orig, images, make_grid(8, 8, "centres"), step=0)
    assert coords.shape == (3, 64, 2) and torch.equal(gt, images.flatten(2).transpose(1, 2))
    orig.train.jitter_std = 0.01
    jittered, _ = training_batch(orig, images, make_grid(8, 8, "centres"), step=0)
    assert torch.equal(jittered[0], jittered[1])  # one draw for the batch, as the original's helper
    assert 0.005 < (jittered[0] - coords[0]).std() < 0.015


def tiny(side="notebook", **train):
    nb, orig = preset("smoke").baselines()
    cfg = nb if side == "notebook" else orig
    cfg.data.train_subset, cfg.data.test_subset = 32, 8
    cfg.eval.sr_sizes, cfg.eval.sr_images = [32], 4
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.mark.parametrize("side", ["notebook", "original"])
def test_same_seed_same_numbers(tmp_path, side):
    a = train_run(tiny(side, max_steps=3), tmp_path / "a", final_eval=False)
    b = train_run(tiny(side, max_steps=3), tmp_path / "b", final_eval=False)
    assert a["test"] == b["test"]
    history = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 3


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    whole = train_run(tiny(max_steps=6, eval_every=2, epochs=10), tmp_path / "whole", final_eval=False)

    class Crash(Exception):
        pass

    def crash_at_5(update):
        if update["step"] == 5:
            raise Crash

    with pytest.raises(Crash):
        train_run(tiny(max_steps=6, eval_every=2, epochs=10), tmp_path / "cut", progress=crash_at_5, final_eval=False)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    status = json.loads((tmp_path / "cut" / "status.json").read_text())
    assert status["state"] == "failed" and status["error"].startswith("Crash") and status["step"] == 5
    resumed = train_run(tiny(max_steps=6, eval_every=2, epochs=10), tmp_path / "cut", final_eval=False)
    assert resumed["test"] == whole["test"]
    assert (tmp_path / "cut" / "history.jsonl").read_text().count("\n") == 3


def test_a_finished_run_is_not_recomputed(tmp_path):
    first = train_run(tiny(max_steps=2), tmp_path / "r", final_eval=False)
    stamp = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    assert train_run(tiny(max_steps=2), tmp_path / "r", final_eval=False) == first
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == stamp


def test_a_kill_between_the_commit_point_and_the_status_is_completed_on_resume(tmp_path):
    """metrics.json written, status.json still 'running' (a SIGKILL between the two writes): the next
    call returns the results without training and marks the run done."""
    first = train_run(tiny(max_steps=2), tmp_path / "r", final_eval=False)
    (tmp_path / "r" / "status.json").write_text(json.dumps({"state": "running", "step": 2, "total_steps": 2}))
    assert train_run(tiny(max_steps=2), tmp_path / "r", final_eval=False) == first
    assert json.loads((tmp_path / "r" / "status.json").read_text()) == {"state": "done", "step": 2, "total_steps": 2}


def test_divergence_stops_with_a_record(tmp_path):
    cfg = tiny(max_steps=4, lr=1e6, clip_norm=None)
    cfg.model.output_activation = "none"
    with pytest.raises(DivergedError, match="loss became"):
        train_run(cfg, tmp_path / "d", final_eval=False)


def test_full_evaluation_is_recorded(tmp_path):
    m = train_run(tiny(max_steps=2), tmp_path / "e")
    assert {"test", "jitter", "sr_notebook", "sr_true", "probe", "params", "gflop_per_image"} <= set(m)
    assert set(m["jitter"]["same"]) == {"0.0", "0.005", "0.01", "0.02", "0.05"}
    assert (tmp_path / "e" / "samples.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def signals_handled():
    """parity's SIGTERM/SIGINT handlers in this process for one test, then the previous ones back."""
    import signal

    from parity.runtime import stopping

    before = {sig: signal.getsignal(sig) for sig in stopping.HANDLED}
    stopping.install()
    yield stopping
    stopping.clear()
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_sigterm_ends_the_step_saves_the_run_and_the_rerun_matches(tmp_path, signals_handled):
    """The signal lands mid-run (step 3 of 6, between evaluations): the step finishes, the checkpoint is written at
    that step and the run is marked interrupted; resuming it ends bit-identical to an uninterrupted run."""
    import os
    import signal

    whole = train_run(tiny(max_steps=6, eval_every=4, epochs=10), tmp_path / "whole", final_eval=False)

    def term_at_3(update):
        if update["step"] == 3 and "psnr" not in update:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(signals_handled.Interrupted, match="SIGTERM") as stopped:
        train_run(tiny(max_steps=6, eval_every=4, epochs=10), tmp_path / "cut", progress=term_at_3, final_eval=False)
    assert "saved at step 3 of 6" in stopped.value.where
    status = json.loads((tmp_path / "cut" / "status.json").read_text())
    assert status == {"state": "interrupted", "step": 3, "total_steps": 6, "signal": "SIGTERM"}
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 3
    signals_handled.clear()
    resumed = train_run(tiny(max_steps=6, eval_every=4, epochs=10), tmp_path / "cut", final_eval=False)
    assert resumed["test"] == whole["test"]

    def history(run):
        lines = (tmp_path / run / "history.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "train_time_s"} for x in lines]

    assert history("cut") == history("whole") and [h["step"] for h in history("cut")] == [4, 6]


def test_an_unreadable_checkpoint_of_an_unfinished_run_is_set_aside_and_the_run_restarts(tmp_path, capsys):
    """The named fix works: a truncated checkpoint.pt (a disk that filled, a copy cut short) no longer fails every
    rerun the same way; it is kept as checkpoint.pt.corrupt, the run starts over and ends as an uncut run."""
    whole = train_run(tiny(max_steps=4, eval_every=2, epochs=10), tmp_path / "whole", final_eval=False)

    def crash_at_3(update):
        if update["step"] == 3:
            raise RuntimeError("cut")

    with pytest.raises(RuntimeError):
        train_run(tiny(max_steps=4, eval_every=2, epochs=10), tmp_path / "cut", progress=crash_at_3, final_eval=False)
    checkpoint = tmp_path / "cut" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    resumed = train_run(tiny(max_steps=4, eval_every=2, epochs=10), tmp_path / "cut", final_eval=False)
    assert resumed["test"] == whole["test"]
    assert (tmp_path / "cut" / "checkpoint.pt.corrupt").stat().st_size == 100
    assert "set aside as checkpoint.pt.corrupt, the run restarted from step 0" in capsys.readouterr().err


def test_a_finished_run_with_a_nan_psnr_is_evaluated_again_by_the_rerun(tmp_path):
    """The report's advice ("rerun parity ablate to evaluate the run again") holds: the run is not done."""
    from parity.runtime.rundir import RunDir

    first = train_run(tiny(max_steps=2), tmp_path / "r", final_eval=False)
    metrics = tmp_path / "r" / "metrics.json"
    broken = json.loads(metrics.read_text())
    broken["test"]["psnr"] = float("nan")
    metrics.write_text(json.dumps(broken))
    assert not RunDir(tmp_path / "r").is_done()  # so a matrix's rerun does not skip it
    again = train_run(tiny(max_steps=2), tmp_path / "r", final_eval=False)
    assert again["test"] == first["test"] and RunDir(tmp_path / "r").is_done()
    assert (tmp_path / "r" / "metrics.json.corrupt").exists()
