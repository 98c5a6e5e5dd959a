"""The ``parity`` command line."""

from __future__ import annotations

import argparse
import sys

from .errors import ParityError


def _console():
    from rich.console import Console

    return Console()


def cmd_summary(args) -> int:
    from rich.status import Status

    from .summary import notebook_summary, original_summary, summary_table

    console = _console()
    with Status("building both ports and counting FLOPs (FlopCounterMode)...", console=console):
        rows = [notebook_summary(not args.no_flops), original_summary(not args.no_flops)]
    console.print(summary_table(rows))
    for row in rows:
        for note in row.notes:
            console.print(f"[dim]{row.name}: {note}[/dim]")
    return 0


def cmd_bench_scan(args) -> int:
    from .bench.scan import bench_scan, scan_table

    console = _console()
    with console.status(f"selective scan forward+backward, B={args.batch} L={args.length} "
                        f"d_inner={args.d_inner} d_state={args.d_state}, {args.repeats} runs each..."):
        rows = bench_scan(batch=args.batch, length=args.length, d_inner=args.d_inner, d_state=args.d_state,
                          repeats=args.repeats)
    console.print(scan_table(rows))
    return 0


def cmd_bench_step(args) -> int:
    from .bench.step import measure_step, step_table

    console = _console()
    rows = []
    for port in args.ports:
        with console.status(f"{port}: one training step at batch {args.batch}, {args.repeats} runs "
                            "in a fresh process..."):
            rows.append(measure_step(port, args.batch, args.repeats, args.scan, args.threads))
    console.print(step_table(rows))
    console.print("[dim]peak RSS: ru_maxrss of the benchmark's own process (interpreter, torch, model, "
                  "warm-up step and timed steps included)[/dim]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description="MAMBA-GINR parity toolkit: faithful ports "
                                     "of the original and the notebook, and the differences between them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="both ports side by side at their CIFAR-10 settings")
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting (faster)")
    p.set_defaults(func=cmd_summary)

    bench = sub.add_parser("bench", help="speed and memory benchmarks").add_subparsers(dest="case", required=True,
                                                                                        metavar="CASE")
    p = bench.add_parser("scan", help="selective scan forward+backward: reference vs fast path")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--d-inner", type=int, default=512)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_bench_scan)

    p = bench.add_parser("step", help="one training step of a port's CIFAR-10 config: images/s, peak memory")
    p.add_argument("ports", nargs="*", default=["original", "notebook"], choices=["original", "notebook"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scan", default="chunked", choices=["ref", "chunked"])
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_bench_step)
    return parser


def _positive(args) -> None:
    for name in ("batch", "length", "d_inner", "d_state", "repeats"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ParityError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _positive(args)
        return args.func(args)
    except ParityError as e:
        print(f"parity: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
