"""Hard to break (issue 5), with the evidence written to reports/reliability.md.

1. every bad input a user can give ends in one line `parity: error: ...`, exit status 2, no traceback;
2. a matrix killed with SIGKILL at random points, then rerun, ends with the results of an uninterrupted
   run, bit for bit; every file the harness writes goes through parity/core/store.py;
3. a diverging variant is recorded as failed (step, losses), the matrix goes on, the report lists it;
4. two `parity ablate` processes on one folder share the work: each run trained exactly once;
5. the same configuration and seed give the same numbers, bit for bit, on CPU.

The report is written when the whole module ran and passed (a `-k` selection leaves it alone), so a
CI run of the suite regenerates it. Set PARITY_KILL_SEED to replay the kill points of a failed run.
"""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import original_port
from parity.cli import main
from parity.core.store import atomic_write_text
from parity.experiment.config import config_diff
from parity.experiment.configfile import load_yaml
from parity.experiment.presets import preset
from parity.runtime.executors import run_matrix
from parity.runtime.train import DivergedError, train_run

ROOT = Path(__file__).resolve().parents[2]
# The evidence becomes reports/reliability.md only when asked (tests never write into tracked files):
#   PARITY_RELIABILITY_REPORT=reports/reliability.md python -m pytest tests/parity/test_reliability.py
REPORT = ROOT / os.environ["PARITY_RELIABILITY_REPORT"] if os.environ.get("PARITY_RELIABILITY_REPORT") else None

# The smallest matrix that still has seeds, variants and evaluations (tests/parity/test_cli.py's FAST,
# with an evaluation, hence a checkpoint, after every step: many points a kill can land between).
TINY = ["--set", "data.train_subset=16", "--set", "data.test_subset=8", "--set", "eval.sr_sizes=[32]",
        "--set", "eval.sr_images=4", "--set", "train.epochs=4", "--set", "train.max_steps=4",
        "--set", "train.eval_every=1", "--set", "eval.probe=false"]
SUBSET = ["--only", "notebook+lr", "--only", "notebook+depth"]
SEEDS = 2
ABLATE = ["ablate", "--preset", "smoke", "--seeds", str(SEEDS), *TINY, *SUBSET]
RUNS = [(v, s) for v in ("notebook", "notebook+depth", "notebook+lr") for s in range(SEEDS)]
KILLS = 4
# Fields that measure the machine, not the model: equal only by chance between two runs.
VOLATILE = ("train_time_s", "train_images_per_s", "peak_rss_mb", "environment", "stages")  # times and memory
# A tiny model for `parity train` cases that must get as far as training.
TINY_MODEL = ["--set", "data.image_size=16", "--set", "model.dim=16", "--set", "model.depth=1",
              "--set", "model.num_lp=2", "--set", "model.decoder_width=8", "--set", "model.num_freqs_modulation=4",
              "--set", "model.num_freqs_hyponet=4", "--set", "train.batch_size=4", "--set", "train.max_steps=5",
              "--set", "data.train_subset=20", "--set", "data.test_subset=4", "--no-final-eval"]

EVIDENCE: dict = {"bad_input": {}}


def _env() -> dict:
    # one thread in every process: the reference and the killed runs reduce in the same order, and two
    # concurrent processes do not fight over the 2 cores
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "parity.cli", *args]


def _stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def _history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "train_time_s"} for line in lines]


def _run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / "smoke-one-at-a-time" / variant / f"seed-{seed}"


def _all_json_parses(folder: Path) -> int:
    """Every JSON file and history line under ``folder`` parses; returns how many files were read."""
    files = list(folder.rglob("*.json")) + list(folder.rglob("history.jsonl"))
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            [json.loads(line) for line in path.read_text().splitlines()]
    return len(files)


# ------------------------------------------------------------------------------------------ report


@pytest.fixture(scope="module", autouse=True)
def write_report_when_complete():
    yield
    sections = ("kill", "writes", "diverged", "concurrency", "reproducible")
    if REPORT and len(EVIDENCE["bad_input"]) == len(BAD_INPUTS) and all(k in EVIDENCE for k in sections):
        atomic_write_text(REPORT, _render(EVIDENCE))  # resolved from the checkout: tests change directory


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _render(ev: dict) -> str:
    out = ["# Reliability: bad input, kills, divergence, concurrency, reproducibility", "",
           "Written by `tests/parity/test_reliability.py` when the whole module passes with "
           "`PARITY_RELIABILITY_REPORT=reports/reliability.md python -m pytest tests/parity/test_reliability.py` "
           "(the plain test suite asserts the same and writes nothing). Everything below was measured in that run; "
           "only the kill points are random (their seed is given, to replay them).", ""]

    out += ["## Bad input", "",
            f"{len(ev['bad_input'])} bad inputs, each given to `parity.cli.main` in-process: every one exits with "
            "status 2 and prints exactly one line, `parity: error: ...` naming the problem and the fix, without a "
            "traceback (argparse's own refusals print its usage line first, also with status 2).", "",
            "| bad input tried | message produced |", "|---|---|"]
    for case in BAD_INPUTS:  # the declared order, whatever order the tests ran in
        out.append(f"| {_cell(case[1])} | `` {_cell(ev['bad_input'][case[0]])} `` |")  # `` allows ` inside

    k = ev["kill"]
    out += ["", "## Nothing lost: SIGKILL at random points, then resume", "",
            f"Command: `parity {' '.join(ABLATE)} --out DIR` ({k['runs']} runs: {len(RUNS) // SEEDS} variants x "
            f"{SEEDS} seeds, {k['steps']} steps each, a checkpoint after every step).", "",
            f"- kills: {k['kills']} with SIGKILL, each {k['low']:.2f}-{k['high']:.2f} s after the process had started "
            f"its first run (kill points drawn with seed {k['seed']}; `PARITY_KILL_SEED={k['seed']}` replays them); "
            f"{k['landed']} of them landed while the process was working, then one rerun finished the matrix "
            f"(exit status {k['final_rc']})",
            f"- runs: {k['runs']}, all done; results identical to an uninterrupted run of the same command in "
            f"another folder: **{'yes' if k['identical'] else 'no'}** (metrics.json minus "
            f"{', '.join(VOLATILE)}, and history.jsonl minus train_time_s, compared exactly for every run)",
            f"- results folder: {k['json_files']} JSON files and histories, all parse; temporary files of writes "
            f"cut by a kill, left: {k['temporary']} (hidden `.NAME.*.tmp`, never read: the file each was to replace "
            "stayed whole; a resumed run deletes those in its folder)", "",
            "| kill | after (s) | runs finished by then | run in progress (step reached) |", "|---|---|---|---|"]
    for row in k["table"]:
        out.append(f"| {row['kill']} | {row['delay']:.2f} | {row['finished']} | {row['in_progress']} |")
    w = ev["writes"]
    out += ["", f"Writes: every file written by `parity/` and `original_port/` goes through `parity/core/store.py` "
            f"(temporary file, fsync, rename); an AST scan of their {w['files']} modules finds no other `write_text`, "
            "`write_bytes`, "
            "`open(..., 'w')`, `torch.save` or `savefig` except:", ""]
    out += [f"- `{where}`: {why}" for where, why in w["allowed"]]

    d = ev["diverged"]
    out += ["", "## A diverging run", "",
            f"`run_matrix` with `{d['variant']}` trained at lr 1e6 without clipping or output activation (a "
            "real divergence of the real trainer):", "",
            f"- recorded: status `{d['state']}` at step {d['step']}, last losses {d['losses']}",
            f"- the matrix went on: the next run, `{d['next']}`, finished ({d['next_state']})",
            f"- `parity report` lists it: {_cell(d['report_row'])}"]

    c = ev["concurrency"]
    out += ["", "## Two processes on one folder", "",
            f"Two `parity {' '.join(ABLATE)}` started together with the same `--out` (every training logged by the "
            "process that did it). Decision: a run claimed by another live process (an flock on RUN/.lock, "
            "dropped by the kernel when its process dies) is passed over; at the end each process waits for the "
            "runs it passed over, so both return with every run finished; a run whose process died is resumed by "
            "the survivor, a run that failed during the command is not retried.", "",
            f"- exit statuses: {c['rcs'][0]} and {c['rcs'][1]}",
            f"- runs: {c['runs']}; trained by the first process {c['by'][0]}, by the second {c['by'][1]}; "
            f"trained twice: {c['twice']}; missing: {c['missing']}",
            f"- histories: steps 1..{k['steps']} once each in every run: {'yes' if c['steps_ok'] else 'no'}",
            f"- results folder: {c['json_files']} JSON files and histories, all parse; results identical to the "
            f"single-process run: **{'yes' if c['identical'] else 'no'}**"]

    r = ev["reproducible"]
    out += ["", "## Reproducible", "",
            "`train_run` twice in fresh folders, same configuration and seed, full final evaluation, on CPU:", "",
            "| configuration | metrics.json (minus timings, memory, environment) | history | weights |",
            "|---|---|---|---|"]
    for row in r:
        out.append(f"| {row['name']} | {row['metrics']} | {row['history']} | {row['weights']} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ 1. bad input


class Payload:
    """A pickle that runs code when loaded (it makes a folder): weights_only loading must refuse it."""

    def __reduce__(self):
        return os.mkdir, ("pickle-code-ran",)


def _image(path: Path, size=(32, 32), colour=(200, 30, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(root: Path, count: int, size: int = 32) -> Path:
    for split in ("train", "test"):
        for i in range(count):
            _image(root / split / "cat" / f"{i:02d}.png", (size, size), (10 * i, 100, 50))
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A real `parity train` run folder (tiny), for the checkpoint cases to tamper with."""
    out = tmp_path_factory.mktemp("train")
    assert main(["train", "--out", str(out), "--dataset", "procedural", *TINY_MODEL]) == 0
    return out / "notebook" / "seed-0"


def _copy_run(run: Path) -> Path:
    """The run folder as if killed before the end (no metrics.json), so --resume reads its checkpoint."""
    shutil.copytree(run, "run")
    Path("run/metrics.json").unlink()
    return Path("run/checkpoint.pt")


def _tampered(run: Path, change) -> list[str]:
    ckpt = _copy_run(run)
    state = torch.load(ckpt, weights_only=True)
    change(state)
    torch.save(state, ckpt)
    return ["train", "--resume", str(ckpt)]


def _rename_key(state):
    first = next(iter(state["model"]))
    state["model"]["encoder.extra.weight"] = state["model"].pop(first)


def _truncated(run: Path) -> list[str]:
    ckpt = _copy_run(run)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return ["train", "--resume", str(ckpt)]


def _write(name: str, text: str) -> str:
    Path(name).write_text(text)
    return name


TRANSINR_OTHER = """model:
  name: trans_inr
  args: {tokenizer: {name: imgrec_tokenizer, args: {input_size: 32, patch_size: 4}}}
optimizer: {name: adam, args: {lr: 1.e-4}}
max_epoch: 40
"""
TRANSINR_INCOMPLETE = """model:
  name: mamba_lainr_inr
  args:
    tokenizer: {name: mamba_patch_tokenizer, args: {patch_size: 2, pos_emb: fourier}}
    hyponet: {name: lainr_mlp_bias, args: {sigma_q: 16, sigma_ls: [128, 32]}}
    mamba_encoder: {name: mamba_encoder, args: {dim: 256}}
optimizer: {name: adamw, args: {lr: 5.e-4}}
"""


def _lazy_corrupt_image() -> list[str]:
    # 20 files: the up-front header check reads 8 spread over them, not 05.png; training loads it
    _folder(Path("lazy"), 20, size=16)
    Path("lazy/train/cat/05.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return ["train", "--dataset", "imagefolder", "--data-root", "lazy", "--out", "runs", *TINY_MODEL]


def _another_config() -> list[str]:
    args = ["train", "--dataset", "procedural", "--out", "runs", *TINY_MODEL]
    assert main(args) == 0
    return [*args, "--set", "train.lr=2e-4"]


def _trans_inr_checkpoint(run: Path) -> list[str]:
    """A trans-inr checkpoint whose weights do not fit its spec (original_port.load_checkpoint, the API)."""
    spec = {"name": "mamba_lainr_inr", "args": {
        "tokenizer": {"name": "mamba_patch_tokenizer", "args": {"input_size": 8, "patch_size": 2, "dim": 48,
                                                                 "pos_emb": "fourier"}},
        "hyponet": {"name": "lainr_mlp_bias", "args": {"feature_dim": 16, "input_dim": 2, "output_dim": 3,
                                                       "sigma_q": 16, "sigma_ls": [128, 32], "n_patches": 16}},
        "mamba_encoder": {"name": "mamba_encoder", "args": {"dim": 48, "depth": 1, "ff_dim": 64}},
        "type": "equidistant", "n_group": 1, "num_lp": 8}}
    sd = original_port.from_spec(spec).state_dict()
    sd.pop("lps")
    sd["lps_renamed"] = torch.zeros(1)
    torch.save({"model": {**spec, "sd": sd}, "epoch": 3}, "epoch-last.pth")
    return ["api:load_checkpoint", "epoch-last.pth"]


# (id, what the user did, argv or a callable(finished run) -> argv, a keyword of the expected message)
BAD_INPUTS = [
    ("toggle", "`parity train --toggle no-such-id`", ["train", "--toggle", "no-such-id"], "closest names"),
    ("toggle-typo", "`parity train --toggle pixel-samplin`", ["train", "--toggle", "pixel-samplin"],
     "did you mean 'pixel-sampling'"),
    ("key", "`--set no.such.key=1`", ["train", "--set", "no.such.key=1"], "unknown configuration key"),
    ("lr", "`--set train.lr=-1`", ["train", "--set", "train.lr=-1"], "train.lr must be positive"),
    ("epochs", "`--set train.epochs=0`", ["train", "--set", "train.epochs=0"], "train.epochs must be at least 1"),
    ("patch", "`--set model.patch_size=5` (does not divide 32)", ["train", "--set", "model.patch_size=5"],
     "does not divide"),
    ("num-lp", "`--set model.num_lp=0`", ["train", "--set", "model.num_lp=0"], "model.num_lp must be at least 1"),
    ("jitter", "`--set train.jitter_std=-1`", ["train", "--set", "train.jitter_std=-1"], "must not be negative"),
    ("type", "`--set train.lr=abc`", ["train", "--set", "train.lr=abc"], "must be a number"),
    ("broken-yaml", "`--config broken.yaml` (unclosed bracket)",
     lambda run: ["train", "--config", _write("broken.yaml", "model: [\n")], "not valid YAML"),
    ("section", "`--config` with an unknown section (`trainer:`)",
     lambda run: ["train", "--config", _write("section.yaml", "base: notebook\ntrainer:\n  lr: 0.001\n")],
     "unknown section 'trainer'"),
    ("transinr-model", "`--config` an original trans-inr YAML of another model (`trans_inr`)",
     lambda run: ["train", "--config", _write("imgrec_trans_inr.yaml", TRANSINR_OTHER)], "only mamba_lainr_inr"),
    ("transinr-key", "`--config` a trans-inr YAML without `hyponet.args.feature_dim`",
     lambda run: ["train", "--config", _write("imgrec_incomplete.yaml", TRANSINR_INCOMPLETE)], "lacks the key"),
    ("resume-missing", "`--resume not-a-checkpoint.pt`", ["train", "--resume", "not-a-checkpoint.pt"],
     "does not exist"),
    ("resume-truncated", "`--resume` a checkpoint cut in half", _truncated, "truncated or corrupt"),
    ("resume-pickle", "`--resume` a pickle with arbitrary objects (code that runs on load)",
     lambda run: (torch.save({"model": Payload()}, "evil.pt"), ["train", "--resume", "evil.pt"])[1],
     "refused by weights_only"),
    ("resume-keys", "`--resume` a run checkpoint whose weights do not fit the model (one key renamed)",
     lambda run: _tampered(run, _rename_key), "missing 1"),
    ("resume-optimizer", "`--resume` a run checkpoint whose optimizer state does not fit",
     lambda run: _tampered(run, lambda s: s["optimizer"]["param_groups"][0].update(params=[0])),
     "optimizer state"),
    ("resume-keys-api", "`original_port.load_checkpoint` of a trans-inr checkpoint with a missing and an "
     "unexpected key", _trans_inr_checkpoint, "missing 1: lps; unexpected 1: lps_renamed"),
    ("other-config", "`parity train` twice into one `--out`, the second with another `--set train.lr`",
     lambda run: _another_config(), "holds a run of another configuration"),
    ("data-missing", "`--dataset imagefolder --data-root missing/`",
     ["train", "--dataset", "imagefolder", "--data-root", "missing/"], "does not exist"),
    ("data-empty", "`--dataset imagefolder --data-root empty/` (an empty folder)",
     lambda run: (Path("empty").mkdir(), ["train", "--dataset", "imagefolder", "--data-root", "empty"])[1],
     "no train/ folder"),
    ("data-empty-class", "an image folder with an empty class folder",
     lambda run: ([Path(f"classes/{s}/cat").mkdir(parents=True) for s in ("train", "test")],
                  ["train", "--dataset", "imagefolder", "--data-root", "classes"])[1], "empty class folder"),
    ("data-mixed", "an image folder with mixed sizes (one 40x40 among 32x32)",
     lambda run: (_folder(Path("mixed"), 4), _image(Path("mixed/train/cat/02.png"), (40, 40)),
                  ["train", "--dataset", "imagefolder", "--data-root", "mixed"])[2], "mixed sizes"),
    ("data-unreadable", "an image folder with an unreadable image",
     lambda run: (_folder(Path("bad"), 4), Path("bad/train/cat/01.png").write_bytes(b"not an image"),
                  ["train", "--dataset", "imagefolder", "--data-root", "bad"])[2], "cannot read image"),
    ("data-unreadable-late", "an unreadable image met only while training (DataLoader iteration)",
     lambda run: _lazy_corrupt_image(), "cannot read image lazy/train/cat/05.png"),
    ("preset", "`parity ablate --preset no-such-preset`", ["ablate", "--preset", "no-such-preset"],
     "unknown preset 'no-such-preset'"),
    ("only", "`parity ablate --only notebook+lrr` (a typo would run the baseline alone)",
     ["ablate", "--only", "notebook+lrr"], "did you mean 'notebook+lr'"),
    ("matrix", "`parity ablate --matrix one-at-a-tim` (argparse)", ["ablate", "--matrix", "one-at-a-tim"],
     "invalid choice"),
    ("report", "`parity report missing-folder/`", ["report", "missing-folder/"], "does not exist"),
    ("report-empty", "`parity report` a folder without results", lambda run: (Path("nothing").mkdir(),
                                                                             ["report", "nothing"])[1],
     "no matrix.json"),
    # issue 15: what an adversarial newcomer found
    ("lr-inf", "`--set train.lr=inf`", ["train", "--set", "train.lr=inf"], "not a finite number"),
    ("wd-nan", "`--set train.weight_decay=nan`", ["train", "--set", "train.weight_decay=nan"],
     "not a finite number"),
    ("ff-dim", "`--set model.ff_dim=-5`", ["train", "--set", "model.ff_dim=-5"], "model.ff_dim must be at least 1"),
    ("ff-dim-zero", "`--set model.ff_dim=0` (was silently replaced)", ["train", "--set", "model.ff_dim=0"],
     "model.ff_dim must be at least 1"),
    ("sigma-empty", "`--set model.sigma_ls=[]`", ["train", "--set", "model.sigma_ls=[]"], "model.sigma_ls is empty"),
    ("jitter-nan", "`--set train.jitter_std=nan` (was silently replaced)", ["train", "--set", "train.jitter_std=nan"],
     "not a finite number"),
    ("dim-huge", "`--set model.dim=100000000` (was killed for memory without a word)",
     ["train", "--set", "model.dim=100000000"], "implausibly large"),
    ("memory", "`--set model.dim=60000` (more memory than the machine has)", ["train", "--set", "model.dim=60000"],
     "needs an estimated"),
    ("out-file", "`--out` naming an existing file", lambda run: (Path("afile").write_text("x"), [
        "train", "--dataset", "procedural", "--out", "afile", "--max-steps", "1"])[1], "cannot write or read afile"),
    ("config-binary", "`--config` a binary file", lambda run: (Path("bin.yaml").write_bytes(b"\xff\xfe\x00\x81"),
                                                               ["train", "--config", "bin.yaml"])[1],
     "not a text file"),
    ("config-folder", "`--config` a folder", lambda run: (Path("cfgdir").mkdir(), ["train", "--config", "cfgdir"])[1],
     "is a folder"),
    ("config-no-model", "`--config` a trans-inr YAML without a model",
     lambda run: ["train", "--config", _write("nomodel.yaml", "trainer: imgrec_trainer_lainr\nmax_epoch: 10\n")],
     "no model"),
    ("data-symlink-loop", "an image folder with a symbolic link loop (read 1,640 images instead of 40)",
     lambda run: (_folder(Path("loop"), 4), os.symlink("..", "loop/train/cat/back"),
                  ["train", "--dataset", "imagefolder", "--data-root", "loop"])[2], "symbolic link loop"),
    ("data-fifo", "an image folder with a FIFO named x.jpg (hung forever)",
     lambda run: (_folder(Path("fifo"), 4), os.mkfifo("fifo/train/cat/x.jpg"),
                  ["train", "--dataset", "imagefolder", "--data-root", "fifo"])[2], "FIFO"),
    ("groups", "`parity ablate --matrix factorial --groups decodr,encoder`",
     ["ablate", "--matrix", "factorial", "--groups", "decodr,encoder"], "did you mean 'decoder'"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys, finished_run):
    case_id, _, argv, keyword = case
    monkeypatch.chdir(tmp_path)  # relative paths: messages (and the report) do not depend on tmp_path
    if callable(argv):
        argv = argv(finished_run)
    capsys.readouterr()  # drop what setting up printed
    if argv[0] == "api:load_checkpoint":
        with pytest.raises(ValueError) as info:  # ParityError is a ValueError
            original_port.load_checkpoint(argv[1])
        assert type(info.value).__name__ == "ParityError"
        err, rc = f"parity: error: {info.value}", 2  # what the CLI would print for it
    elif case_id == "matrix":
        with pytest.raises(SystemExit) as info:
            main(argv)
        rc, err = info.value.code, capsys.readouterr().err.strip().splitlines()[-1]
    else:
        rc, err = main(argv), capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("parity: error:") or (case_id == "matrix" and "error:" in err), err
    assert keyword in err, err
    if case_id == "resume-pickle":
        assert not Path("pickle-code-ran").exists()  # refused before anything ran
    if case_id == "data-unreadable-late":
        assert Path("runs/notebook/seed-0/config.yaml").exists()  # it got as far as training
    EVIDENCE["bad_input"][case_id] = err


def test_data_loading_stays_in_this_process():
    """Errors raised while loading images reach the CLI as they are because loaders use no workers."""
    from parity.runtime.train import _loader

    nb, _ = preset("smoke").baselines()
    assert _loader(list(range(4)), nb, 1).num_workers == 0 and _loader(list(range(4)), nb, None).num_workers == 0


# ------------------------------------------------------------------------------------------ 2. kill and resume


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The matrix run once, uninterrupted, in a process started now; ``wait()`` returns its folder."""
    out = tmp_path_factory.mktemp("reference")
    proc = subprocess.Popen(_cli(*ABLATE, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=_env())

    class Reference:
        def wait(self) -> Path:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            return out

    yield Reference()
    if proc.poll() is None:
        proc.kill()


def _progress(out: Path) -> tuple[int, str]:
    """Runs finished, and the runs in progress with the step their status.json last recorded."""
    finished, busy = 0, []
    for variant, seed in RUNS:
        run_dir = _run_dir(out, variant, seed)
        if (run_dir / "metrics.json").exists():
            finished += 1
        elif (run_dir / "status.json").exists():
            step = json.loads((run_dir / "status.json").read_text()).get("step")
            busy.append(f"{variant} seed {seed} (step {step})")
    return finished, ", ".join(busy) or "none"


def test_killed_matrix_resumes_to_identical_results(tmp_path, reference):
    kill_seed = int(os.environ.get("PARITY_KILL_SEED", int.from_bytes(os.urandom(3), "little")))
    rng = random.Random(kill_seed)
    # seconds after the process began its first run (imports and dataset set-up, a second or two, are
    # not worth a kill); a run takes about 0.4 s, so a kill lands in training, in the final
    # evaluation or between runs, and the four together reach well into the matrix
    low, high = 0.0, 1.0
    out = tmp_path / "killed"
    table, landed = [], 0
    for kill in range(1, KILLS + 1):
        launched = time.time_ns()
        proc = subprocess.Popen(_cli(*ABLATE, "--out", str(out)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=_env())
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and \
                not any(p.stat().st_mtime_ns >= launched for p in out.glob("*/*/seed-*/status.json")):
            time.sleep(0.01)
        delay = rng.uniform(low, high)
        time.sleep(delay)
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no handler, no finally, no flush
            landed += 1
        proc.wait()
        finished, busy = _progress(out)
        table.append({"kill": kill, "delay": delay, "finished": f"{finished} of {len(RUNS)}", "in_progress": busy})
    final = subprocess.run(_cli(*ABLATE, "--out", str(out)), capture_output=True, text=True, env=_env(), timeout=300)
    assert final.returncode == 0, final.stderr

    ref = reference.wait()
    identical = True
    for variant, seed in RUNS:
        mine, theirs = _run_dir(out, variant, seed), _run_dir(ref, variant, seed)
        assert json.loads((mine / "status.json").read_text())["state"] == "done"
        a, b = json.loads((mine / "metrics.json").read_text()), json.loads((theirs / "metrics.json").read_text())
        assert a["test"] == b["test"], (variant, seed)
        assert _stable(a) == _stable(b), (variant, seed)
        assert _history(mine) == _history(theirs), (variant, seed)
        identical &= _stable(a) == _stable(b) and _history(mine) == _history(theirs)
    steps = json.loads((_run_dir(ref, "notebook", 0) / "metrics.json").read_text())["steps"]
    EVIDENCE["kill"] = {"seed": kill_seed, "low": low, "high": high, "kills": KILLS, "landed": landed, "table": table,
                        "final_rc": final.returncode, "runs": len(RUNS), "steps": steps, "identical": identical,
                        "json_files": _all_json_parses(out), "temporary": len(list(out.rglob("*.tmp")))}


# Calls that write files; allowed where they write to memory, or a lock rather than a result.
WRITERS = {"write_text", "write_bytes", "savefig"}
ALLOWED_WRITES = {
    "parity/core/store.py": "the atomic writes themselves",
    "parity/runtime/runlock.py:claim": "the run's lock file (an flock; its content is informational)",
    "parity/runtime/runlock.py:_claim_by_pid_file": "the lock file of the no-fcntl fallback (created exclusively)",
}


def _writes(path: Path, rel: str) -> list[str]:
    """'file:function' for each call in ``path`` that writes a file without parity/core/store.py."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, where):
        for child in ast.iter_child_nodes(node):
            inner = f"{rel}:{child.name}" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else where
            if isinstance(child, ast.Call):
                f = child.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                mode = next((a.value for a in child.args[1:2] if isinstance(a, ast.Constant)), None)
                mode = next((k.value.value for k in child.keywords if k.arg == "mode"
                             and isinstance(k.value, ast.Constant)), mode)
                if name in WRITERS or (owner == "torch" and name == "save") or \
                        (name == "open" and owner != "Image" and isinstance(mode, str) and set(mode) & set("wax")) or \
                        (owner == "os" and name == "write"):
                    found.append(inner)
            visit(child, inner)

    visit(tree, rel)
    return found


def test_every_write_goes_through_the_store():
    modules = sorted((ROOT / "parity").rglob("*.py")) + sorted((ROOT / "original_port").rglob("*.py"))
    found = set()
    for path in modules:
        rel = path.relative_to(ROOT).as_posix()
        if rel != "parity/core/store.py":
            found |= set(_writes(path, rel))
    assert found <= set(ALLOWED_WRITES), sorted(found - set(ALLOWED_WRITES))
    EVIDENCE["writes"] = {"files": len(modules), "allowed": sorted(ALLOWED_WRITES.items())}


# ------------------------------------------------------------------------------------------ 3. divergence


def test_a_diverging_variant_is_recorded_and_the_matrix_goes_on(tmp_path, monkeypatch, capsys):
    import parity.runtime.matrix
    import parity.runtime.train

    real = parity.runtime.train.train_run
    victim = "notebook+depth"

    def diverge_one(cfg, run_dir, *args, **kwargs):
        if Path(run_dir).parent.name == victim:  # only this variant: lr 1e6, nothing to tame it
            cfg = cfg.copy()
            cfg.train.lr, cfg.train.clip_norm, cfg.model.output_activation = 1e6, None, "none"
        return real(cfg, run_dir, *args, **kwargs)

    monkeypatch.setattr(parity.runtime.train, "train_run", diverge_one)
    # the victim's config.yaml records the lr 1e6 slipped in above, behind the planner's back, which the planner
    # would refuse as another configuration in this folder; here that is the point, not a mistake
    monkeypatch.setattr(parity.runtime.matrix, "refuse_other_configurations", lambda folder, jobs: None)
    overrides = [TINY[i + 1] for i in range(0, len(TINY), 2)]
    folder = run_matrix("one-at-a-time", "smoke", 1, tmp_path, overrides, only=["notebook+depth", "notebook+lr"])
    status = json.loads((folder / victim / "seed-0" / "status.json").read_text())
    assert status["state"] == "failed" and status["step"] >= 1 and "loss became" in status["error"]
    assert not (folder / victim / "seed-0" / "metrics.json").exists()
    after = folder / "notebook+lr" / "seed-0"  # registry order: depth, then lr
    assert json.loads((after / "status.json").read_text())["state"] == "done"

    capsys.readouterr()
    assert main(["report", str(folder), "--out", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("|") and victim in line and "failed" in line)
    assert f"at step {status['step']}" in row and "loss became" in row
    losses = ", ".join(f"{x:.3g}" for x in status["losses"][-3:]) or "none (it diverged on the first step)"
    # `parity ablate` itself: the failed run is retried (it failed before this command), fails again, and the
    # command ends with the table and exit status 1 while the finished run stays finished
    capsys.readouterr()
    code = main(["ablate", "--matrix", "one-at-a-time", "--preset", "smoke", "--out", str(tmp_path),
                 "--only", "notebook+depth", "--only", "notebook+lr",
                 *[a for item in overrides for a in ("--set", item)]])
    shown = capsys.readouterr().out
    assert code == 1 and "1 run(s) failed" in shown and victim in shown and "loss" in shown
    assert json.loads((after / "status.json").read_text())["state"] == "done"
    EVIDENCE["diverged"] = {"variant": victim, "state": status["state"], "step": status["step"], "losses": losses,
                            "next": "notebook+lr", "next_state": "done",
                            "report_row": " | ".join(c.strip().replace("`", "") for c in row.strip("|").split("|")[:5])}


def test_divergence_raises_with_step_and_losses(tmp_path):
    nb, _ = preset("smoke").baselines()
    nb.data.train_subset, nb.data.test_subset, nb.train.max_steps = 16, 8, 4
    nb.train.lr, nb.train.clip_norm, nb.model.output_activation = 1e6, None, "none"
    with pytest.raises(DivergedError) as info:
        train_run(nb, tmp_path / "d", final_eval=False)
    assert info.value.step >= 1 and len(info.value.recent) == info.value.step - 1


# ------------------------------------------------------------------------------------------ 4. concurrency

# Each process logs every training it starts and ends (runs that still lack metrics.json when
# train_run is entered), in one file opened for appending: lines of one write are never interleaved.
LOGGED = """
import os, sys
from pathlib import Path
import parity.runtime.train as train
real, log = train.train_run, os.open(os.environ["TRAIN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def logged(cfg, run_dir, *args, **kwargs):
    fresh = not (Path(run_dir) / "metrics.json").exists()
    fresh and os.write(log, f"{os.getpid()} start {run_dir}\\n".encode())
    try:
        return real(cfg, run_dir, *args, **kwargs)
    finally:
        fresh and os.write(log, f"{os.getpid()} end {run_dir}\\n".encode())
train.train_run = logged
from parity.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_processes_on_one_folder_train_each_run_once(tmp_path, reference):
    out, log = tmp_path / "shared", tmp_path / "train.log"
    env = {**_env(), "TRAIN_LOG": str(log)}
    procs = [subprocess.Popen([sys.executable, "-c", LOGGED, *ABLATE, "--out", str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    rcs = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        rcs.append(proc.returncode)
        assert proc.returncode == 0, err

    events = [line.split(" ", 2) for line in log.read_text().splitlines()]
    pids = [str(p.pid) for p in procs]
    starts: dict[str, list[str]] = {}
    for pid, event, run_dir in events:
        if event == "start":
            starts.setdefault(run_dir, []).append(pid)
    twice = {r: p for r, p in starts.items() if len(p) > 1}
    assert not twice, twice
    missing = [f"{v} seed {s}" for v, s in RUNS if not (_run_dir(out, v, s) / "metrics.json").exists()]
    assert not missing and len(starts) == len(RUNS)
    assert sorted(e[1] for e in events).count("end") == len(RUNS)

    ref = reference.wait()
    steps = json.loads((_run_dir(ref, "notebook", 0) / "metrics.json").read_text())["steps"]
    identical = steps_ok = True
    for variant, seed in RUNS:
        mine, theirs = _run_dir(out, variant, seed), _run_dir(ref, variant, seed)
        history = [h["step"] for h in _history(mine)]
        steps_ok &= history == list(range(1, steps + 1))
        identical &= _stable(json.loads((mine / "metrics.json").read_text())) == \
            _stable(json.loads((theirs / "metrics.json").read_text())) and _history(mine) == _history(theirs)
    assert steps_ok and identical
    assert not list(out.rglob("*.tmp"))  # no half-written file left behind
    by = [sum(1 for r in starts.values() if r[0] == pid) for pid in pids]
    EVIDENCE["concurrency"] = {"rcs": rcs, "runs": len(RUNS), "by": by, "twice": len(twice), "missing": len(missing),
                               "steps_ok": steps_ok, "identical": identical, "json_files": _all_json_parses(out)}


# ------------------------------------------------------------------------------------------ 5. reproducible


def _tiny(side: str):
    nb, orig = preset("smoke").baselines()
    cfg = nb if side == "notebook" else orig
    cfg.data.train_subset, cfg.data.test_subset = 16, 8
    cfg.eval.sr_sizes, cfg.eval.sr_images = [32], 4
    cfg.train.max_steps, cfg.train.eval_every, cfg.train.epochs = 3, 1, 4
    return cfg


@pytest.mark.parametrize("side", ["notebook", "original"])
def test_same_configuration_and_seed_give_identical_numbers(tmp_path, side):
    a, b = tmp_path / "a", tmp_path / "b"
    ma, mb = train_run(_tiny(side), a), train_run(_tiny(side), b)  # full final evaluation, probe included
    assert _stable(ma) == _stable(mb)
    assert json.loads((a / "metrics.json").read_text()) == json.loads(json.dumps(ma))
    assert _history(a) == _history(b)
    wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not config_diff(load_yaml(a / "config.yaml"), load_yaml(b / "config.yaml"))
    row = {"name": f"smoke {side}, seed 0, {ma['steps']} steps", "metrics": "identical", "history": "identical",
           "weights": f"identical ({len(wa)} tensors)"}
    EVIDENCE.setdefault("reproducible_rows", {})[side] = row
    if len(EVIDENCE["reproducible_rows"]) == 2:
        EVIDENCE["reproducible"] = [EVIDENCE["reproducible_rows"][s] for s in ("notebook", "original")]


def test_resume_between_evaluations_matches_an_uninterrupted_run(tmp_path):
    """A run cut after a checkpoint resumes with the same losses behind its mean train_loss, also when
    the last evaluation comes fewer than eval_every steps after the one before (5 steps, every 2)."""
    cfg = _tiny("notebook")
    cfg.train.max_steps, cfg.train.eval_every, cfg.train.epochs, cfg.train.batch_size = 5, 2, 10, 8
    whole = train_run(cfg, tmp_path / "whole", final_eval=False)
    assert whole["steps"] == 5

    class Cut(Exception):
        pass

    def cut_at_5(update):
        if update["step"] == 5:  # the first update after step 4's checkpoint: it resumes from step 4
            raise Cut

    with pytest.raises(Cut):
        train_run(cfg, tmp_path / "cut", progress=cut_at_5, final_eval=False)
    resumed = train_run(cfg, tmp_path / "cut", final_eval=False)
    assert _stable(resumed) == _stable(whole)
    assert _history(tmp_path / "cut") == _history(tmp_path / "whole")


def test_sigterm_mid_matrix_saves_the_run_says_so_and_resumes_bit_identical(tmp_path, reference):
    """SIGTERM, as a scheduler sends it on preemption: the run in progress ends its step, saves its checkpoint and
    is marked 'interrupted'; the command prints one line and exits 143; the rerun ends as the uninterrupted one."""
    out = tmp_path / "terminated"
    proc = subprocess.Popen(_cli(*ABLATE, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=_env())
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # in training: a status past step 0
        states = [json.loads(p.read_text() or "{}") for p in out.glob("*/*/seed-*/status.json")]
        if any(s.get("state") == "running" and s.get("step", 0) >= 1 for s in states):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the matrix ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "run the same command again" in lines[0], err
    states = [json.loads(p.read_text())["state"] for p in out.glob("*/*/seed-*/status.json")]
    assert "running" not in states and "interrupted" in states, states
    final = subprocess.run(_cli(*ABLATE, "--out", str(out)), capture_output=True, text=True, env=_env(), timeout=300)
    assert final.returncode == 0, final.stderr
    ref = reference.wait()
    for variant, seed in RUNS:
        mine, theirs = _run_dir(out, variant, seed), _run_dir(ref, variant, seed)
        a, b = json.loads((mine / "metrics.json").read_text()), json.loads((theirs / "metrics.json").read_text())
        assert _stable(a) == _stable(b) and _history(mine) == _history(theirs), (variant, seed)
