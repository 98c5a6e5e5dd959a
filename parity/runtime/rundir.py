"""One run's folder and every file in it, owned here: config.yaml (the configuration it belongs to),
checkpoint.pt (the latest state, enough to resume exactly), history.jsonl (one line per evaluation),
status.json (running / done / failed, with the reason), metrics.json (the final evaluation: the commit
point), samples.png. Every write is atomic (store.py), so a kill at any moment leaves the previous file
or the new one. The trainer loops; the CLI, the executors, results loading and export read and write run
folders only through this class.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.checkpoints import RUN_CHECKPOINT_KEYS, RUN_MODEL, RUN_OPTIMIZER, is_run_checkpoint, read_checkpoint
from ..core.errors import ParityError, RunFileError, first_line
from ..core.store import atomic_torch_save, atomic_write_text, read_json, remove_partial_writes, write_json
from ..experiment.config import config_diff, to_yaml
from ..experiment.configfile import load_yaml


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint holds besides the weights and the optimizer."""

    step: int = 0
    history: list = field(default_factory=list)  # one dict per evaluation
    train_time: float = 0.0
    train_images: int = 0
    losses: list = field(default_factory=list)  # the loss tail a resumed run needs for the same means

    def advance(self, loss: float, images: int, seconds: float) -> None:
        """One optimiser step done: its loss, the images it saw and the time it took."""
        self.step += 1
        self.losses.append(loss)
        self.train_images += images
        self.train_time += seconds

    def to_checkpoint(self, model, optimizer, loss_tail: int) -> dict:
        """What checkpoint.pt holds: the weights, the optimizer and this state (the last ``loss_tail`` losses)."""
        return {RUN_MODEL: model.state_dict(), RUN_OPTIMIZER: optimizer.state_dict(), "step": self.step,
                "history": self.history, "train_time": self.train_time, "train_images": self.train_images,
                "losses": self.losses[-loss_tail:]}

    @classmethod
    def from_checkpoint(cls, state: dict) -> TrainState:
        """The state a checkpoint holds besides its weights and optimizer (checkpoints written before the loss
        tail was saved resume with an empty one)."""
        return cls(state["step"], state["history"], state["train_time"], state["train_images"],
                   list(state.get("losses", [])))


def metrics_problem(metrics) -> str | None:
    """Why a metrics.json does not hold a finished run's results (truncated, empty, NaN, another format);
    None when it does."""
    if not isinstance(metrics, dict):
        return f"holds {type(metrics).__name__}, not the results object"
    test = metrics.get("test")
    psnr = test.get("psnr") if isinstance(test, dict) else None
    if isinstance(psnr, bool) or not isinstance(psnr, (int, float)):
        return "has no test PSNR (an old or foreign format)"
    if not math.isfinite(psnr):
        return f"has a test PSNR of {psnr}"
    if not isinstance(metrics.get("steps"), int):
        return "has no step count (an old or foreign format)"
    return None


class RunDir:
    """A run folder (``…/<variant>/seed-<k>``)."""

    def __init__(self, path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.checkpoint = self.path / "checkpoint.pt"
        self.history_file = self.path / "history.jsonl"
        self.status_file = self.path / "status.json"
        self.metrics_file = self.path / "metrics.json"
        self.samples = self.path / "samples.png"
        self.restarted = ""  # why load_state set an unreadable checkpoint aside, if it did

    @classmethod
    def of_checkpoint(cls, checkpoint) -> RunDir:
        """The run folder a ``checkpoint.pt`` belongs to (``parity train --resume``): a one-line ParityError
        when the file is not a parity run checkpoint or has no config.yaml beside it."""
        checkpoint = Path(checkpoint)
        state = read_checkpoint(checkpoint)
        if not is_run_checkpoint(state, complete=True):
            raise ParityError(f"{checkpoint} is not a parity run checkpoint ({', '.join(RUN_CHECKPOINT_KEYS)}): pass "
                              "the checkpoint.pt of a `parity train` run folder")
        run = cls(checkpoint.parent)
        if not run.config.exists():
            raise ParityError(f"{run.path} has no config.yaml next to the checkpoint: resume from a run folder")
        return run

    def load_config(self):
        """The configuration this run belongs to (config.yaml)."""
        return load_yaml(self.config)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ reading

    def check_config(self, cfg) -> None:
        """A run folder belongs to one configuration: refuse to resume, or return the results of, a run
        whose config.yaml differs in a field that changes results (config_diff(results_only=True))."""
        if not self.config.is_file():
            if self.checkpoint.exists():  # resuming would mix two configurations in one run
                raise ParityError(f"{self.path} holds a checkpoint but no config.yaml, so its configuration is "
                                  "unknown: delete that folder to start the run over")
            return
        diff = self.config_differences(cfg)
        if diff:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:3])
            more = f" (+{len(diff) - 3} more)" if len(diff) > 3 else ""
            raise ParityError(f"{self.path} holds a run of another configuration ({shown}{more}): pass another "
                              "--out, or delete that folder to start the run over")

    def config_differences(self, cfg) -> dict:
        """{field: (this run's value, cfg's)} where config.yaml differs from ``cfg`` ({} without a config.yaml;
        the fields that change no result, such as data.download and model.scan, are not compared)."""
        if not self.config.is_file():
            return {}
        return config_diff(self.load_config(), cfg, results_only=True)

    def finished_metrics(self) -> dict | None:
        """metrics.json when it holds finished results; a corrupt one is set aside as metrics.json.corrupt
        (kept for inspection) so the run finishes again from its checkpoint, never counted as done."""
        try:
            metrics = read_json(self.metrics_file)
        except ParityError:
            metrics = "unreadable"
        if metrics is None:
            return None
        if metrics_problem(metrics) is None:
            self._complete_status(metrics)
            return metrics
        os.replace(self.metrics_file, self.metrics_file.with_name(self.metrics_file.name + ".corrupt"))
        return None

    def is_done(self) -> bool:
        """metrics.json written and status.json saying done. A run killed between the two writes is not done
        yet: its next ``train_run`` completes the commit without training."""
        if not self.metrics_file.exists() or self.metrics_problem() is not None:
            return False  # a NaN or torn metrics.json: the rerun evaluates the run again (finished_metrics)
        try:
            return self.status().get("state", "done") == "done"  # no status.json: written before statuses
        except ParityError:
            return False

    def _complete_status(self, metrics: dict) -> None:
        """A kill between metrics.json (the commit point) and the status write leaves a finished run marked
        running: finish the commit."""
        try:
            done = self.status().get("state") == "done"
        except ParityError:  # a torn status.json: rewritten below
            done = False
        if not done:
            self.write_status("done", step=metrics.get("steps"), total_steps=metrics.get("steps"))

    def metrics_problem(self) -> str | None:
        """Why metrics.json is not a finished run's results (None when it is, or when there is none)."""
        if not self.metrics_file.is_file():
            return None
        try:
            return metrics_problem(read_json(self.metrics_file))
        except ParityError:
            return "is not valid JSON"

    def status(self) -> dict:
        """status.json ({} when there is none); ParityError when it is unreadable."""
        return read_json(self.status_file, {}) or {}

    def load_state(self, model, optimizer) -> TrainState:
        """The checkpoint into ``model`` and ``optimizer`` (a fresh state without one). Anything that does not
        fit is a RunFileError: this run fails, a matrix goes on."""
        if not self.checkpoint.exists():
            return TrainState()
        from ..core.checkpoints import load_state_dict_strict, read_checkpoint

        fix = "delete it to restart the run from scratch"
        try:
            state = read_checkpoint(self.checkpoint)
        except ParityError as e:  # truncated or unreadable: the run's own file, so set it aside and start over
            aside = self.checkpoint.with_name(self.checkpoint.name + ".corrupt")
            os.replace(self.checkpoint, aside)
            self.restarted = f"{self.checkpoint.name} could not be read ({first_line(e)}); " \
                             f"set aside as {aside.name}, the run restarted from step 0"
            return TrainState()
        try:
            if not is_run_checkpoint(state, complete=True):
                have = ", ".join(sorted(map(str, state))) if isinstance(state, dict) else type(state).__name__
                raise ParityError(f"{self.checkpoint} is not a parity run checkpoint (expected "
                                  f"{', '.join(RUN_CHECKPOINT_KEYS)}; found {have}): {fix}")
            load_state_dict_strict(model, state[RUN_MODEL], source=f"checkpoint {self.checkpoint}")
        except RunFileError:
            raise
        except ParityError as e:
            raise RunFileError(str(e)) from None
        try:
            optimizer.load_state_dict(state[RUN_OPTIMIZER])
        except (ValueError, KeyError, TypeError) as e:
            raise RunFileError(f"the optimizer state in {self.checkpoint} does not fit the model ({first_line(e)}): "
                               f"{fix}") from None
        return TrainState.from_checkpoint(state)

    # ------------------------------------------------------------------ writing

    def start(self, cfg) -> None:
        """Create the folder, drop writes a kill cut short (store.py's temporary names), record the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_partial_writes(self.path)
        atomic_write_text(self.config, to_yaml(cfg))

    def write_status(self, state: str, **fields) -> None:
        write_json(self.status_file, {"state": state, **fields})

    def save(self, model, optimizer, state: TrainState, loss_tail: int, total_steps: int) -> None:
        """Checkpoint, history and status after an evaluation."""
        atomic_torch_save(self.checkpoint, state.to_checkpoint(model, optimizer, loss_tail))
        self.write_history(state.history)
        self.write_status("running", step=state.step, total_steps=total_steps)

    def write_history(self, history: list) -> None:
        atomic_write_text(self.history_file, "".join(json.dumps(h) + "\n" for h in history))

    def finish(self, metrics: dict, history: list, total_steps: int) -> None:
        """The run's last writes: history again (a run killed between its last checkpoint and here resumes
        with nothing left to train, so the loop would not rewrite a history that missed the last
        evaluation), metrics.json (the commit point), status."""
        self.write_history(history)
        write_json(self.metrics_file, metrics)
        self.write_status("done", step=metrics.get("steps"), total_steps=total_steps)

    def fail(self, error: str, **fields) -> None:
        self.write_status("failed", error=error, **fields)


__all__ = ["RunDir", "TrainState", "metrics_problem"]
