"""The ``parity`` command line."""

from __future__ import annotations

import argparse
import sys

from .core.errors import ParityError


def _console():
    from rich.console import Console

    return Console()


def cmd_summary(args) -> int:
    from rich.status import Status

    from .evaluation.summary import notebook_summary, original_summary, summary_table

    console = _console()
    with Status("building both ports and counting FLOPs (FlopCounterMode)...", console=console):
        rows = [notebook_summary(not args.no_flops), original_summary(not args.no_flops)]
    console.print(summary_table(rows))
    for row in rows:
        for note in row.notes:
            console.print(f"[dim]{row.name}: {note}[/dim]")
    return 0


def _require_compiled_scan() -> None:
    """The one-line error of both --phases commands where the compiled kernel is missing."""
    from .bench.scan import scan_available

    missing = scan_available("compiled")
    if missing:
        raise ParityError(f"the scan's phases need the compiled kernel: {missing}")


def cmd_bench_scan(args) -> int:
    from .bench.scan import bench_scan, scan_phase_table, scan_phases_fresh, scan_table

    console = _console()
    if args.phases:
        _require_compiled_scan()
        with console.status(f"the compiled scan by phase, {args.repeats} runs (its timed build, a fresh process)..."):
            rows = scan_phases_fresh(args.batch, args.length, args.d_inner, args.d_state, repeats=args.repeats)
        console.print(scan_phase_table(rows))
        return 0
    with console.status(f"selective scan forward+backward, B={args.batch} L={args.length} "
                        f"d_inner={args.d_inner} d_state={args.d_state}: fast path {args.repeats} runs, reference "
                        f"{args.ref_repeats} (about 2 minutes each at the default shape on 2 cores)..."):
        rows = bench_scan(batch=args.batch, length=args.length, d_inner=args.d_inner, d_state=args.d_state,
                          repeats=args.repeats, ref_repeats=args.ref_repeats)
    console.print(scan_table(rows))
    return 0


def cmd_bench_suite(args) -> int:
    from .bench.suite import SuiteConfig, write_benchmarks

    console = _console()
    cfg = SuiteConfig(repeats=args.repeats, ref_repeats=args.ref_repeats, matrix_repeats=args.matrix_repeats,
                      quick=args.quick)
    out = write_benchmarks(cfg, args.out, progress=lambda msg: console.log(msg))
    console.print(f"wrote {out}")
    return 0


def cmd_bench_jobs(args) -> int:
    import os

    from .bench.jobs import jobs_section, measure_jobs

    console = _console()
    console.log(f"the cpu-study slice at --jobs 1, then --jobs 2 ({args.steps} steps a run, fresh processes)")
    console.print("\n".join(jobs_section(measure_jobs(args.steps), os.cpu_count() or 1)))
    return 0


def cmd_bench_evaluation(args) -> int:
    import shlex
    import sys

    from .bench.evaluation import write_evaluation_report

    console = _console()
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s not in ("notebook", "original")]
    if unknown or not sides:
        raise ParityError(f"--sides {args.sides!r}: name notebook, original or both (comma list)")
    command = "parity " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = write_evaluation_report(sides, args.preset, args.set, args.steps, args.out, args.report, command,
                                     progress=console.log)
    console.print(f"wrote {report}")
    return 0


def cmd_bench_gpu(args) -> int:
    from .bench.gpu import write_gpu_report

    console = _console()
    with console.status("GPU check: golden parity on the GPU, then one training step of each port..."):
        out, results = write_gpu_report(args.out, args.repeats)
    failed = [r["port"] for r in results["golden"] if not r["passed"]]
    console.print(f"wrote {out}" + (f"; golden parity FAILED for {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_bench_step(args) -> int:
    from .bench.step import measure_step, step_scan_phases_fresh, step_table

    console = _console()
    if args.phases:
        from .bench.scan import scan_phase_table

        _require_compiled_scan()
        for port in args.ports:
            with console.status(f"{port}: its scans by phase in {args.repeats} training steps at batch {args.batch} "
                                "(the kernel's timed build, a fresh process)..."):
                phase_rows = step_scan_phases_fresh(port, args.batch, args.repeats)
            console.print(scan_phase_table(phase_rows, f", per scan in {port}'s training step at batch {args.batch}"))
        return 0
    rows = []
    for port in args.ports:
        with console.status(f"{port}: one training step at batch {args.batch}, {args.repeats} runs "
                            "in a fresh process..."):
            rows.append(measure_step(port, args.batch, args.repeats, args.scan, args.threads))
    console.print(step_table(rows))
    for r in rows:
        top = ", ".join(f"{op['op']} {op['ms']:.0f} ms ({op['share']:.0%})" for op in r["profile"][:6])
        console.print(f"[bold]{r['port']}[/bold] where the step's time goes (torch.profiler, self CPU): {top}")
        parts = r.get("parts")
        if parts and r.get("scan_floor_s") is not None:
            console.print(f"  by part: matrix products {parts['matmul']:.0f} ms, selective scans "
                          f"{parts['scan']:.0f} ms (their bound {r['scan_floor_s'] * 1e3:.0f} ms), other compiled "
                          f"kernels {parts['kernels']:.0f} ms, everything else {parts['other']:.0f} ms")
    console.print("[dim]peak RSS: the high-water mark of the benchmark's own process (interpreter, torch, model, "
                  "warm-up step and timed steps included); of GEMM rate: the step's FLOPs (FlopCounterMode) per "
                  "second over a 2048^3 fp32 matmul's rate timed right before each step; ceiling: the same for the "
                  "least time the step could take here, its matrix products at the rate they run at and its scans at "
                  "their hardware bound, every other op free[/dim]")
    return 0


def cmd_differences(args) -> int:
    from .experiment.config import field_paths
    from .report.audit import differences_frame

    if args.fields:
        print("\n".join(field_paths()))
        return 0
    frame = differences_frame(include_improvements=True)
    if args.markdown:
        print(frame.to_markdown(index=False))
        return 0
    from rich.table import Table

    table = Table(title="Differences between the notebook and the original (parity registry)")
    for col in ("id", "component", "notebook", "original", "seed audit", "title"):
        table.add_column(col, overflow="fold")
    for row in frame.itertuples():
        table.add_row(row.id, row.component, row.notebook, row.original, row._5, row.title)
    _console().print(table)
    return 0


def cmd_audit(args) -> int:
    from .report.audit import write_audit

    console = _console()
    with console.status("auditing (building both ports, counting FLOPs)..."):
        path = write_audit(args.out, count_flops=not args.no_flops)
    console.print(f"wrote {path}")
    return 0


def cmd_structure(args) -> int:
    from .structure import render_structure, room_graph, summary

    graph = room_graph()
    print(summary(graph))
    for path in render_structure(args.out, graph=graph):
        print(f"wrote {path}")
    return 0


def _experiment_config(args):
    """--config FILE or --baseline, then --toggle, --set and the data flags, validated."""
    from .experiment.config import apply_overrides, baseline, set_field, validate
    from .experiment.configfile import load_yaml
    from .experiment.differences import apply_toggles

    if args.config:
        cfg = load_yaml(args.config)
    elif getattr(args, "preset", None):
        from .experiment.presets import preset

        nb, orig = preset(args.preset).baselines()
        cfg = orig if args.baseline == "original" else nb
    else:
        cfg = baseline(args.baseline)
    side = "notebook" if (not args.config and args.baseline == "original") else "original"
    pair = (nb, orig) if getattr(args, "preset", None) and not args.config else None
    cfg = apply_toggles(cfg, args.toggle, side=side, baselines=pair)
    for flag, path in (("dataset", "data.dataset"), ("data_root", "data.root"), ("seed", "train.seed"),
                       ("max_steps", "train.max_steps")):
        if getattr(args, flag, None) is not None:
            set_field(cfg, path, getattr(args, flag))
    if getattr(args, "download", False):
        cfg.data.download = True
    cfg = apply_overrides(cfg, args.set)
    if args.toggle:
        from .experiment.differences import IMPROVEMENTS

        fixes = {i.id for i in IMPROVEMENTS}
        cfg.name += "".join(f"{'-' if side == 'notebook' and t not in fixes else '+'}{t}" for t in args.toggle)
    return validate(cfg)


def cmd_train(args) -> int:
    from pathlib import Path

    from .runtime.train import DivergedError, train_run

    console = _console()
    if args.resume:
        from .runtime.rundir import RunDir

        run = RunDir.of_checkpoint(args.resume)
        run_dir, cfg = run.path, run.load_config()
    else:
        from .core.store import safe_folder_name

        cfg = _experiment_config(args)
        run_dir = Path(args.out) / safe_folder_name(cfg.name) / f"seed-{cfg.train.seed}"
    if args.dry_run:
        from .runtime.estimate import estimate_runs

        console.log("measuring one training step of this configuration on this device")
        return _print_plan([estimate_runs("train", cfg.name, cfg, [run_dir])], f"parity train --dry-run: {cfg.name} "
                           f"-> {run_dir}", console)
    from rich.progress import Progress

    from .runtime import distributed
    from .runtime.progress import progress_columns, training_updates

    ddp = distributed.context() if distributed.requested() else None  # under torchrun: every rank trains its slice
    try:
        if ddp is not None:
            metrics = train_run(cfg, run_dir, progress=None, final_eval=not args.no_final_eval)
        else:
            with Progress(*progress_columns(elapsed=False), console=console) as bar:
                updates = training_updates(bar, bar.add_task(cfg.name, total=None, info=""))
                metrics = train_run(cfg, run_dir, progress=updates, final_eval=not args.no_final_eval)
    except DivergedError as e:
        raise ParityError(f"training diverged: {e}; lower train.lr or enable train.clip_norm") from None
    finally:
        if ddp is not None:
            distributed.shutdown()
    if ddp is None or ddp.is_main:  # rank 0 reports
        test = metrics["test"]
        where = f" on {ddp.world_size} processes" if ddp is not None else ""
        console.print(f"{cfg.name}: test PSNR {test['psnr']:.2f} dB (per image), {test['psnr_batch_mse']:.2f} dB "
                      f"(batch MSE) after {metrics['steps']} steps{where} -> {run_dir}")
    return 0


def cmd_ablate(args) -> int:
    from pathlib import Path

    from .experiment.kinds import RUN_ORDER
    from .runtime.executors import make_executor, run_matrix

    console = _console()
    executor = make_executor(args.executor, args.address, args.jobs)  # before any run: a missing ray is one line
    from .experiment.differences import parse_groups

    groups = parse_groups(args.groups)
    kinds = list(RUN_ORDER) if args.matrix == "all" else [args.matrix]
    if args.dry_run:
        return _dry_run(kinds, args, groups, console)
    folders = []
    for kind in kinds:
        folders.append(run_matrix(kind, args.preset, args.seeds, Path(args.out), args.set, console=console,
                                  only=args.only or None, executor=executor, groups=groups,
                                  faithful_defects=args.faithful_defects))
        console.print(f"{kind}: results in {folders[-1]}")
    if args.report:
        from .report import write_report

        for folder in folders:
            console.print(f"report: {write_report(folder)}")
    return _failed_runs_table(folders, console)


def _dry_run(kinds, args, groups, console) -> int:
    """`parity ablate --dry-run`: the plan, one measured training step per configuration, the totals; nothing
    is written and nothing trains."""
    from pathlib import Path

    from .runtime.estimate import dry_run
    from .runtime.matrix import plan_matrix

    plans = [plan_matrix(kind, args.preset, args.seeds, Path(args.out), args.set, args.only or None, groups,
                         args.faithful_defects, write=False) for kind in kinds]
    console.log(f"measuring one training step of each configuration on this device ({sum(len(p.jobs) for p in plans)} "
                "runs planned)")
    return _print_plan(dry_run(plans), f"parity ablate --dry-run: {', '.join(kinds)} at --preset {args.preset}, "
                       f"{args.seeds} seed(s)", console)


def _print_plan(rows: list[dict], title: str, console) -> int:
    """The dry-run table of plan rows (runtime.estimate.estimate_runs) and its totals."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("matrix", "variant", "done", "to do", "steps a run", "s a step", "memory (MiB)", "to train (s)"):
        table.add_column(column, justify="left" if column in ("matrix", "variant") else "right")
    for r in rows:
        table.add_row(r["matrix"], r["variant"], str(r["done"]), str(r["to_do"]), f"{r['steps_per_run']:,}",
                      f"{r['step_s']:.3f}", f"{r['memory_mib']:,.0f}", f"{r['seconds_to_do']:,.0f}")
    console.print(table)
    total = sum(r["seconds_to_do"] for r in rows)
    done, to_do = sum(r["done"] for r in rows), sum(r["to_do"] for r in rows)
    console.print(f"total: {to_do} run(s) to do ({done} done), {total:,.0f} s = {total / 3600:,.1f} hours of training "
                  "on this device at the measured steps (evaluations not included: a floor); peak memory of one run "
                  f"about {max((r['memory_mib'] for r in rows), default=0):,.0f} MiB")
    return 0


def _failed_runs_table(folders, console) -> int:
    """After a matrix: a table of the runs that failed (finished runs stay finished) and exit status 1,
    or 0 when every run finished."""
    from rich.table import Table

    from .report.results import load_results

    failed = []
    for folder in folders:
        runs = load_results(folder).runs
        failed += [r for r in runs.itertuples() if r.state == "failed"]
    if not failed:
        return 0
    table = Table(title=f"{len(failed)} run(s) failed; rerun the same command to retry them")
    for column in ("matrix", "variant", "seed", "reason"):
        table.add_column(column)
    for r in failed:
        reason = next(iter(str(r.error or "").splitlines()), "") or "(no reason recorded)"
        table.add_row(str(r.matrix), str(r.variant), str(r.seed), reason[:160])
    console.print(table)
    return 1


def cmd_pilot(args) -> int:
    from pathlib import Path

    from .report.pilot import write_pilot_report
    from .runtime.pilot import pilot_folder, run_pilot

    try:
        multipliers = [float(m) for m in args.multipliers.split(",") if m.strip()]
    except ValueError:
        raise ParityError(f"--multipliers {args.multipliers!r} is not a comma list of numbers: e.g. 3,10,30") from None
    console = _console()
    folder = pilot_folder(args.out, args.preset)
    if not args.report_only:
        folder = run_pilot(args.preset, multipliers, args.seeds, Path(args.out), args.set, console=console)
    if args.report or args.report_only:
        out = None if args.report in (None, True) else args.report
        console.print(f"report: {write_pilot_report(folder, out)}")
    return 0


def cmd_schedule(args) -> int:
    from rich.table import Table

    from .data import make_datasets
    from .experiment.schedule import lr_table, schedule_epochs

    cfg = _experiment_config(args)
    if args.train_images is None:
        train_images = len(make_datasets(cfg.data)[0])
    else:
        train_images = args.train_images
    rows = lr_table(cfg, train_images)
    t = cfg.train
    table = Table(title=f"{cfg.name}: the learning rate of each schedule epoch ({schedule_epochs(t)} of them: "
                        f"{t.epochs} epochs x {t.lr_subepochs}), {train_images} training images")
    for column in ("schedule epoch", "steps", "first step", "lr", "lr / base"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["epoch"]), str(r["steps"]), str(r["first_step"]), f"{r['lr']:.4g}", f"{r['lr'] / t.lr:.3f}")
    _console().print(table)
    return 0


def cmd_records(args) -> int:
    from .runtime.records import copy_records

    done = copy_records(args.runs_dir, args.out)
    _console().print(f"{args.out}: {done['runs']} run records ({done['copied']} files written); "
                     f"`parity report {args.out}` reads them")
    return 0


def cmd_report(args) -> int:
    from .experiment.differences import parse_groups
    from .report import write_report

    groups = parse_groups(args.groups) if args.groups else None
    path = write_report(args.runs_dir, args.out, groups)
    _console().print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


def cmd_export(args) -> int:
    from .runtime.export import export_run

    out = export_run(args.run_dir, args.format, args.out)
    _console().print(f"wrote {out} ({args.format})")
    return 0


def cmd_diff_models(args) -> int:
    from pathlib import Path

    from .evaluation.diagnose import diff_models

    divergence, markdown = diff_models(args.a, args.b, rtol=args.rtol, atol=args.atol, seed=args.seed,
                                       preset=args.preset)
    if not args.out:
        print(markdown, end="")
        return 0
    from .core.store import atomic_write_text

    out = Path(args.out)
    atomic_write_text(out, markdown)
    print(f"wrote {out}: {divergence.summary()}")
    return 0


def _add_config_arguments(p, presets) -> None:
    """The flags that choose one configuration (train, schedule)."""
    p.add_argument("--baseline", default="notebook", choices=["notebook", "original"],
                   help="the configuration to start from, as its source ran it (default notebook)")
    p.add_argument("--preset", metavar="{" + ",".join(presets) + "}",
                   help="start from this preset's version of the baseline (its budget); toggles take its values")
    p.add_argument("--config", help="our YAML (base + sections) or an original trans-inr YAML")
    p.add_argument("--toggle", action="append", default=[], metavar="ID",
                   help="apply a difference (towards the other baseline) or an improvement; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. train.lr=5e-4")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="parity", description="MAMBA-GINR parity toolkit: faithful ports "
                                     "of the original and the notebook, and the differences between them.")
    parser.add_argument("--version", action="version", version=f"parity {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_inspection_commands(sub)
    _add_training_commands(sub)
    _add_ablate_command(sub)
    _add_results_commands(sub)
    _add_bench_commands(sub)
    return parser


def _add_inspection_commands(sub) -> None:
    """summary, differences, audit, structure: the ports, the registry and the code, no training."""
    p = sub.add_parser("summary", help="both ports side by side at their CIFAR-10 settings")
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting (faster)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("differences", help="the registry of differences as a table")
    p.add_argument("--markdown", action="store_true", help="print markdown instead of a terminal table")
    p.add_argument("--fields", action="store_true", help="list every configuration key instead")
    p.set_defaults(func=cmd_differences)

    p = sub.add_parser("audit", help="no training: the baselines through the registry, params, FLOPs, defects")
    p.add_argument("--out", default="reports/audit.md")
    p.add_argument("--no-flops", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("structure", help="the rooms (folders) of the checkout by layer and the imports between them "
                       "-> OUT/structure.png and OUT/structure.md")
    p.add_argument("--out", default="docs", help="the folder to write to (default docs)")
    p.set_defaults(func=cmd_structure)


def _add_training_commands(sub) -> None:
    """train, schedule, pilot: one configuration, its learning rates, the lr pilot."""
    from .data import DATASETS
    from .experiment.presets import PRESETS

    p = sub.add_parser("train", help="train one configuration")
    _add_config_arguments(p, PRESETS)
    p.add_argument("--dataset", choices=DATASETS,
                   help="cifar10: torchvision's arrays; imagefolder: ROOT/{train,test}/<class>/*.jpg; numbered-jpeg: "
                   "the original's ROOT/cifar-10/000001.jpg layout; procedural: generated offline")
    p.add_argument("--data-root", help="the dataset's folder (data.root)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10")
    p.add_argument("--seed", type=int, help="train.seed: initial weights, data order, pixel draws (default 0)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (train.max_steps)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run whose checkpoint.pt this is")
    p.add_argument("--out", default="runs/train",
                   help="results folder; the run goes to OUT/<configuration name>/seed-<k>/ (default runs/train)")
    p.add_argument("--no-final-eval", action="store_true", help="skip SR, jitter and probe evaluations")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan instead: whether the run is done, its steps, one training step measured here, "
                        "memory and time; trains and writes nothing")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("schedule", help="the learning rate of each schedule epoch a configuration will use")
    _add_config_arguments(p, PRESETS)
    p.add_argument("--train-images", type=int, help="training images (default: those of the configuration's data)")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("pilot", help="each baseline of a preset at multiples of its source's learning rate, scored on "
                       "a validation split of the training images; --report picks one rate a side by one rule")
    p.add_argument("--preset", default="smoke", metavar="{" + ",".join(PRESETS) + "}")
    p.add_argument("--multipliers", default="3,10,30", help="comma list of multiples of each source's lr")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 of each (side, multiplier)")
    p.add_argument("--out", default="runs", help="results folder: OUT/<preset>-lr-pilot/<side>-x<m>/seed-<k>/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field in every run")
    p.add_argument("--report", nargs="?", const=True, metavar="FILE",
                   help="write the pilot's report (default OUT/<preset>-lr-pilot/report.md)")
    p.add_argument("--report-only", action="store_true", help="write the report from the runs there, train nothing")
    p.set_defaults(func=cmd_pilot)


def _add_ablate_command(sub) -> None:
    """ablate: a matrix of variants."""
    from .experiment.presets import PRESETS

    p = sub.add_parser("ablate", help="run an ablation matrix (resumable); exit status 1 when runs failed "
                       "(listed in a table), 2 on a usage error")
    p.add_argument("--matrix", default="one-at-a-time",
                   choices=["factorial", "one-at-a-time", "leave-one-out", "cumulative", "improvements", "all"],
                   help="factorial: 2^k cells over groups of differences (attribution of the gap); leave-one-out: "
                   "the original minus each difference; cumulative: notebook to original, most severe claim first; "
                   "one-at-a-time: the notebook plus each; improvements: the original plus each fix")
    p.add_argument("--groups", help="with --matrix factorial: comma list of groups of differences (default "
                   "decoder,encoder,optimisation,sampling; `parity differences` shows each difference's group)")
    p.add_argument("--faithful-defects", action="store_true",
                   help="keep the batch-0 coordinate defect where the LAINR decoder meets sampled pixels (by "
                   "default those variants decode each sample at its own coordinates, as the original never "
                   "trains on sampled pixels)")
    p.add_argument("--preset", default="smoke", metavar="{" + ",".join(PRESETS) + "}",
                   help="the budget: " + "; ".join(f"{name}: {p.short}" for name, p in PRESETS.items()))
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of every variant, paired across variants")
    p.add_argument("--out", default="runs", help="results folder: OUT/<preset>-<matrix>/<variant>/seed-<k>/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field in every run")
    p.add_argument("--report", action="store_true", help="write the markdown report when done")
    p.add_argument("--only", action="append", default=[], metavar="VARIANT",
                   help="run only these variants (and the baseline); repeatable")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: one run after another in this process; ray: one Ray task per run "
                   "(pip install -e '.[distributed]')")
    p.add_argument("--address", help="with --executor ray: an existing cluster (auto, HOST:PORT, ray://HOST:10001); "
                   "default: a local cluster on this machine's CPUs")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan instead: runs done and to do, one training step of each configuration "
                   "measured here, memory and time totals; trains and writes nothing")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once on this machine (worker processes); every process training into "
                   "--out takes an equal share of the cores, unless OMP_NUM_THREADS is set")
    p.set_defaults(func=cmd_ablate)


def _add_results_commands(sub) -> None:
    """export, records, report, diff-models: what finished runs give."""
    p = sub.add_parser("export", help="a run's weights in the format its source loads (trans-inr checkpoint or "
                       "the notebook's state dict)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (…/<variant>/seed-<k>) with checkpoint.pt")
    p.add_argument("--format", required=True, choices=["transinr", "notebook"],
                   help="transinr: {'model': {'name', 'args', 'sd'}, ...} for an original-decoder run; notebook: "
                   "the bare state dict of MambaGINR_CIFAR for a notebook run")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (.pth)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("records", help="copy finished runs' compact records (no checkpoints) to a folder to commit "
                       "beside a report; incremental, merges several machines' folders")
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="what `parity ablate --out` (or `parity pilot --out`) wrote")
    p.add_argument("out", metavar="OUT", help="the records folder, e.g. reports/<study>_runs")
    p.set_defaults(func=cmd_records)

    p = sub.add_parser("report", help="markdown report with plots from a runs folder")
    p.add_argument("runs_dir", help="a matrix folder, or a folder holding several (what `parity ablate --out` wrote)")
    p.add_argument("--out", help="report file (default RUNS_DIR/report.md, beside the runs); its numbers go to the "
                   "same name with .json")
    p.add_argument("--groups", help="attribute over these groups of the factorial only (comma list; the others stay "
                   "at the notebook's values)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("diff-models", help="where two models' outputs first differ, module by module")
    p.add_argument("a", metavar="A", help="a checkpoint (parity run checkpoint.pt, trans-inr checkpoint, notebook "
                   "state dict) or a configuration name: notebook, original, notebook+ID, original-ID")
    p.add_argument("b", metavar="B", help="the same kinds as A")
    p.add_argument("--out", metavar="FILE.md", help="write the markdown table here (default: print it)")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0, help="initialises models built from names, and the image batch")
    p.add_argument("--preset", help="build configuration names at a matrix preset's scale (e.g. smoke: fast on CPU)")
    p.set_defaults(func=cmd_diff_models)


def _add_bench_commands(sub) -> None:
    """bench and its cases: speed and memory."""
    from .experiment.presets import PRESETS

    bench_parser = sub.add_parser("bench", help="speed and memory benchmarks; alone: the whole suite -> "
                                                "reports/benchmarks.md")
    bench_parser.set_defaults(func=cmd_bench_suite, out="reports/benchmarks.md", quick=False, repeats=3,
                              ref_repeats=1, matrix_repeats=1)
    bench = bench_parser.add_subparsers(dest="case", metavar="CASE")
    p = bench.add_parser("suite", help="every case (scan, training steps, decoding, smoke matrix) -> markdown report")
    p.add_argument("--out", default="reports/benchmarks.md")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per training-step and decoding case")
    p.add_argument("--ref-repeats", type=int, default=1, help="runs of the sequential reference scan (minutes each)")
    p.add_argument("--matrix-repeats", type=int, default=1, help="runs of the whole smoke matrix (0: skip)")
    p.add_argument("--quick", action="store_true", help="tiny shapes: checks the suite runs, measures nothing")
    p.set_defaults(func=cmd_bench_suite)
    p = bench.add_parser("gpu", help="on a CUDA machine: golden parity on the GPU, one training step of each port at "
                         "its source's batch and one scan, each with the GPU's scan and the chunked one -> "
                         "reports/gpu.md")
    p.add_argument("--out", default="reports/gpu.md")
    p.add_argument("--repeats", type=int, default=5, help="timed training steps per port")
    p.set_defaults(func=cmd_bench_gpu)

    p = bench.add_parser("evaluation", help="a preset's whole final evaluation at full data scale after a few "
                         "training steps: each stage's time and peak memory -> markdown report")
    p.add_argument("--preset", default="paper", choices=list(PRESETS))
    p.add_argument("--sides", default="original,notebook", help="comma list: notebook, original")
    p.add_argument("--steps", type=int, default=2, help="optimiser steps before the evaluation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field of both sides")
    p.add_argument("--out", default="runs/bench-evaluation", help="the runs' folder (a rerun reads them back)")
    p.add_argument("--report", default="reports/paper-evaluation.md")
    p.set_defaults(func=cmd_bench_evaluation)

    p = bench.add_parser("jobs", help="matrix throughput at --jobs 1 and --jobs 2 (a cpu-study slice on procedural "
                         "images; part of the suite)")
    p.add_argument("--steps", type=int, default=128, help="optimiser steps of each run")
    p.set_defaults(func=cmd_bench_jobs)

    p = bench.add_parser("scan", help="selective scan forward+backward: reference vs fast path")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--d-inner", type=int, default=512)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5, help="runs of the fast path")
    p.add_argument("--ref-repeats", type=int, default=3, help="runs of the (slow) reference")
    p.add_argument("--phases", action="store_true",
                   help="instead: the compiled kernel's time by phase, each against its part of the bound")
    p.set_defaults(func=cmd_bench_scan)

    p = bench.add_parser("step", help="one training step of a port's CIFAR-10 config: images/s, peak memory")
    p.add_argument("ports", nargs="*", default=["original", "notebook"], choices=["original", "notebook"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scan", default="compiled", choices=["ref", "chunked", "compiled", "parallel"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--phases", action="store_true",
                   help="instead: the step's selective scans by phase, each against its part of the bound")
    p.set_defaults(func=cmd_bench_step)


def _positive(args) -> None:
    for name in ("batch", "length", "d_inner", "d_state", "repeats", "ref_repeats", "seeds", "max_steps"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ParityError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def main(argv: list[str] | None = None) -> int:
    from .runtime import stopping

    args = build_parser().parse_args(argv)
    stopping.install()  # SIGTERM as a scheduler sends it, handled as Ctrl-C is
    try:
        _positive(args)
        return args.func(args)
    except ParityError as e:
        print(f"parity: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        name = getattr(e, "signal_name", "SIGINT")
        where = f" ({e.where})" if getattr(e, "where", "") else ""
        print(f"parity: interrupted by {name}{where}; finished runs are kept, run the same command again to resume",
              file=sys.stderr)
        return 143 if name == "SIGTERM" else 130
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except OSError as e:  # a read-only folder, a full disk, a file where a folder should be: one line, not a traceback
        where = f" {e.filename}" if e.filename else ""
        print(f"parity: error: cannot write or read{where} ({e.strerror or type(e).__name__}): check that the "
              "path is a writable folder with free space (--out), finished runs are kept", file=sys.stderr)
        return 2


def run() -> None:
    """The ``parity`` command: ``main`` in a process whose allocator keeps freed memory for reuse."""
    from .runtime.allocator import relaunch_with_allocator

    relaunch_with_allocator()
    sys.exit(main())


if __name__ == "__main__":
    run()
