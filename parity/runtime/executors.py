"""Executors: where the pending runs of a planned matrix are trained, and ``run_matrix`` (plan, then run).

``parity.runtime.matrix.plan_matrix`` builds the list of jobs (variant, seed, configuration, run folder) and hands it
to an executor. Every executor trains a job with ``parity.runtime.train.train_run`` into the same run folder, so the
results store behaves the same whatever trains it: finished runs are skipped, interrupted runs resume
from their checkpoint.pt, failures are recorded in status.json and the matrix goes on.

- ``LocalExecutor``: one run after another in this process (the default); with ``jobs=N``, N worker processes
  on this machine, each taking runs by the same per-run lock as two commands sharing a folder, each with its
  share of the cores (``seats``).
- ``RayExecutor``: one Ray task per run, on a local Ray cluster or an existing one (``address``). Ray
  is an optional extra (``pip install -e '.[distributed]'``) and is imported only here, on use.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import replace
from pathlib import Path

from ..core.errors import ParityError, RunFileError, first_line
from ..data import DatasetCache
from . import stopping
from .allocator import ENV
from .matrix import Job, plan_matrix
from .progress import progress_columns, training_updates
from .rundir import RunDir
from .runlock import claim, failed_since, release
from .seats import Seat, active_seats, share_cores

RAY_MISSING = ("ray is not installed: pip install -e '.[distributed]' (or pip install 'ray>=2.9'), "
               "or use --executor local")


def train_job(job: Job, datasets=None, progress=None) -> None:
    """Train one job, recording a failure in its status.json instead of raising (one broken variant must
    not sink the matrix): divergence, a run's own unusable files (RunFileError), anything unexpected.
    Other ParityErrors (a usage error, e.g. a folder of another configuration) are raised."""
    from .train import DivergedError, train_run

    try:
        train_run(job.cfg, job.run_dir, datasets=datasets, progress=progress)
    except DivergedError as e:
        RunDir(job.run_dir).fail(str(e), step=e.step, losses=e.recent)
    except RunFileError as e:
        RunDir(job.run_dir).fail(str(e))
    except ParityError:
        raise
    except Exception as e:
        RunDir(job.run_dir).fail(f"{type(e).__name__}: {e}")


def _pending(job: Job, started: float) -> bool:
    return not RunDir(job.run_dir).is_done() and not failed_since(job.run_dir, started)


class Executor:
    name = "executor"

    def run(self, jobs: list[Job], title: str, started: float, console=None) -> None:
        raise NotImplementedError


def results_root(jobs: list[Job]) -> Path:
    """The --out folder the jobs train into (a run folder is OUT/<matrix>/<variant>/seed-<k>)."""
    return Path(jobs[0].run_dir).parents[2]


class LocalExecutor(Executor):
    """Runs on this machine: one after another in this process with a rich progress bar per run, or with
    ``jobs`` > 1 in that many worker processes (spawned: no state shared but the run folders), each taking
    runs by their lock. Every process holds a seat at the results folder and sets torch's threads to its
    share of the cores before each run."""

    name = "local"

    def __init__(self, jobs: int = 1, quiet: bool = False, siblings: int = 1):
        if jobs < 1:
            raise ParityError(f"--jobs must be at least 1, not {jobs}")
        self.jobs, self.quiet, self.siblings = int(jobs), quiet, siblings

    def run(self, jobs: list[Job], title: str, started: float, console=None) -> None:
        if not jobs:
            return
        if self.jobs > 1:
            return self._run_workers(jobs, title, started, console)
        with Seat(results_root(jobs)):
            # a --jobs worker waits (briefly) for its siblings' seats, so its first run takes its share too
            deadline = time.time() + 10.0
            while active_seats(results_root(jobs)) < self.siblings and time.time() < deadline:
                time.sleep(0.05)
            self._run_here(jobs, title, started, console)

    def _run_workers(self, jobs: list[Job], title: str, started: float, console=None) -> None:
        import multiprocessing

        from rich.progress import Progress

        n = min(self.jobs, len(jobs))
        # each worker starts at its own place in the list, so that they do not all queue for the first run
        orders = [jobs[k * len(jobs) // n:] + jobs[:k * len(jobs) // n] for k in range(n)]
        ctx = multiprocessing.get_context("spawn")  # no state shared with the workers but the run folders
        outcomes = ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(order, title, started, n, outcomes)) for order in orders]
        for w in workers:
            w.start()
        try:
            with Progress(*progress_columns(), console=console, transient=False) as bar:
                overall = bar.add_task(f"{title} ({n} jobs)", total=len(jobs), info="")
                while any(w.is_alive() for w in workers):
                    for w in workers:
                        w.join(timeout=0.5 / n)
                    finished = sum(RunDir(j.run_dir).is_done() or failed_since(j.run_dir, started) for j in jobs)
                    bar.update(overall, completed=finished)
        except KeyboardInterrupt:
            for w in workers:  # SIGTERM: each saves its run at the end of the step in progress
                if w.is_alive():
                    w.terminate()
            for w in workers:
                w.join()
            raise
        results = []
        while True:
            try:
                results.append(outcomes.get(timeout=0.1))
            except queue.Empty:
                break
        for kind, message in results:
            if kind == "error":
                raise ParityError(message)
        for kind, message in results:
            if kind == "interrupted":
                raise stopping.Interrupted(message)
        lost = [w.exitcode for w in workers if w.exitcode != 0]
        if lost:
            raise ParityError(f"a --jobs worker ended with exit code {lost[0]}: rerun the same command to finish "
                              "its runs (finished runs are kept)")

    def _run_here(self, jobs: list[Job], title: str, started: float, console=None) -> None:
        from rich.console import Console
        from rich.progress import Progress

        from .runlock import claim, holder, release

        root = results_root(jobs)
        if self.quiet:
            console = Console(quiet=True)
        datasets = DatasetCache()
        with Progress(*progress_columns(), console=console, transient=False) as bar:
            overall = bar.add_task(title, total=len(jobs), info="")
            current = bar.add_task("", total=1, info="", visible=False)

            def train_one(job: Job) -> None:
                pair = datasets.get(job.cfg.data)
                bar.update(current, description=f"  {job.label}", completed=0, total=1, visible=True, info="")
                share_cores(root)  # another command (or worker) may have started or stopped since the last run

                train_job(job, pair, training_updates(bar, current))

            # Two commands on one folder share the work: each run is trained by whichever claims it first.
            # Runs claimed by another live process are passed over, then waited for at the end, so that when
            # this command returns every run is finished or failed (none left to the other): once the lock is
            # ours the run is done (the other process finished it), failed (not retried), or was left
            # half-way by a process that died (resumed here from its checkpoint).
            elsewhere = []
            for job in jobs:
                if _pending(job, started):
                    handle = claim(job.run_dir)
                    if handle is None:
                        bar.update(overall, info=f"{job.label}: taken by {holder(job.run_dir)}")
                        elsewhere.append(job)
                        continue
                    try:  # train_run returns at once if another process finished the run since the check
                        train_one(job)
                    finally:
                        release(job.run_dir, handle)
                    if (name := stopping.requested()) is not None:  # asked during the run's final evaluation
                        raise stopping.Interrupted(name, f"after {job.label}")
                bar.advance(overall)
            for job in elsewhere:
                bar.update(overall, info=f"waiting for {job.label} ({holder(job.run_dir)})")
                handle = claim(job.run_dir, wait=True)
                try:
                    if _pending(job, started):
                        train_one(job)
                finally:
                    release(job.run_dir, handle)
                bar.advance(overall)
            bar.update(overall, info="")
            bar.update(current, visible=False)


def _worker(jobs: list[Job], title: str, started: float, siblings: int, outcomes) -> None:
    """The body of one ``--jobs`` worker process: the local loop over every job, quietly (the parent draws the
    progress); runs other workers hold are passed over and waited for, as between two commands. Its outcome
    goes to ``outcomes``: ('done', ''), ('error', a ParityError's line) or ('interrupted', the signal)."""
    stopping.install()
    try:
        LocalExecutor(1, quiet=True, siblings=siblings).run(jobs, title, started)
    except ParityError as e:
        outcomes.put(("error", str(e)))
    except stopping.Interrupted as e:
        outcomes.put(("interrupted", e.signal_name))
    except KeyboardInterrupt:
        outcomes.put(("interrupted", "SIGINT"))
    else:
        outcomes.put(("done", ""))


# Ray reuses worker processes: keep the last dataset pair per worker, as the local executor does.
_WORKER_DATASETS = DatasetCache()


def _ray_train(job: Job, started: float) -> tuple[str, str]:
    """The body of one Ray task: claim the run folder (the same flock as local runs, so a local command
    and a Ray matrix on one folder never train a run twice), train, release. Returns (state, message);
    a ParityError comes back as ('error', message) so the driver can stop with one line."""
    handle = claim(job.run_dir, wait=True)
    try:
        if not _pending(job, started):
            return "skipped", ""
        try:
            train_job(job, _WORKER_DATASETS.get(job.cfg.data))
        except ParityError as e:
            return "error", str(e)
        run = RunDir(job.run_dir)
        state = run.status().get("state", "done") if run.status_file.exists() else "done"
        return state, ""
    finally:
        release(job.run_dir, handle)


def default_resources() -> tuple[float, float]:
    """(CPUs, GPUs) per run: 1 CPU; 1 GPU when this machine has CUDA (where the driver has no GPU but the
    workers do, pass gpus_per_run explicitly)."""
    try:
        import torch

        gpus = 1.0 if torch.cuda.is_available() else 0.0
    except Exception:  # a broken CUDA setup must not stop a CPU matrix
        gpus = 0.0
    return 1.0, gpus


class RayExecutor(Executor):
    """One Ray task per pending run. ``address``: an existing cluster ("auto", "ray://host:10001", ...);
    None starts a local one with every CPU of this machine (or reuses one already initialised)."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float | None = None,
                 gpus_per_run: float | None = None):
        try:
            import ray  # noqa: F401  (only to fail early, with one line, when the extra is missing)
        except ImportError:
            raise ParityError(RAY_MISSING) from None
        cpus, gpus = default_resources()
        self.address = address
        self.cpus_per_run = cpus if cpus_per_run is None else cpus_per_run
        self.gpus_per_run = gpus if gpus_per_run is None else gpus_per_run

    def _init(self):
        import ray

        if ray.is_initialized():  # a caller (a test, a notebook) already chose the cluster
            return False
        kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False,
                  # workers import parity from this checkout even without an editable install, and start with
                  # this process's allocator settings (a cluster's workers were not started by us)
                  "runtime_env": {"env_vars": {"PYTHONPATH": _pythonpath(),
                                               **({ENV: os.environ[ENV]} if ENV in os.environ else {})}}}
        if self.address:
            ray.init(address=self.address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count(), **kwargs)
        return True

    def run(self, jobs: list[Job], title: str, started: float, console=None) -> None:
        import ray
        from rich.progress import Progress

        # finished runs (and runs failed during this command) are not submitted at all
        # absolute run folders: a worker's working directory is not the driver's
        pending = [replace(j, run_dir=Path(j.run_dir).resolve()) for j in jobs if _pending(j, started)]
        done_already = len(jobs) - len(pending)
        if not pending:
            return
        owned = self._init()
        try:
            task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)(_ray_train)
            refs = {task.remote(j, started): j for j in pending}
            with Progress(*progress_columns(), console=console, transient=False) as bar:
                overall = bar.add_task(f"{title} (ray: {len(pending)} tasks)", total=len(jobs),
                                       completed=done_already, info="")
                waiting = list(refs)
                while waiting:
                    ready, waiting = ray.wait(waiting, num_returns=1)
                    job = refs[ready[0]]
                    try:
                        state, message = ray.get(ready[0])
                    except ray.exceptions.RayError as e:  # the worker died (OOM, node lost): record, go on
                        RunDir(job.run_dir).fail(f"ray: {first_line(e)}")
                        state, message = "failed", ""
                    if state == "error":
                        for ref in waiting:
                            ray.cancel(ref)
                        raise ParityError(f"{job.label}: {message}")
                    bar.update(overall, advance=1, info=f"{job.label}: {state}")
                bar.update(overall, info="")
        finally:
            if owned:
                ray.shutdown()


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")


def make_executor(name: str, address: str | None = None, jobs: int = 1) -> Executor:
    if name == "local":
        if address:
            raise ParityError("--address is for --executor ray")
        return LocalExecutor(jobs)
    if name == "ray":
        if jobs != 1:
            raise ParityError("--jobs is for --executor local: Ray places one task per run on its own")
        return RayExecutor(address)
    raise ParityError(f"unknown executor {name!r}: choose local or ray")


def run_matrix(kind: str, preset_name: str, seeds: int, out, overrides: list[str] | None = None,
               console=None, only: list[str] | None = None, executor=None, groups: tuple[str, ...] | None = None,
               faithful_defects: bool = False):
    """Plan a matrix (parity.runtime.matrix.plan_matrix) and train its pending runs with ``executor`` (default
    LocalExecutor); returns its folder. Finished runs are skipped; failed runs are recorded and the rest
    goes on."""
    started = time.time()
    plan = plan_matrix(kind, preset_name, seeds, out, overrides, only, groups, faithful_defects)
    (executor or LocalExecutor()).run(plan.jobs, plan.title, started, console=console)
    return plan.folder

