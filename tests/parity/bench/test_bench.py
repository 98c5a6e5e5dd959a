"""The benchmark suite's plumbing: the scan peers agree with the reference, a fresh-process case
reports its numbers, and the report states targets honestly. (Speed itself is measured by
``parity bench``, never asserted here.)"""

from __future__ import annotations

import pytest
import torch

from parity.bench.decode import measure_decode
from parity.bench.scan import (
    KERNEL_PHASES,
    _inputs,
    bench_scan,
    bench_scan_phases,
    bound_summary,
    mambapy_scan,
    scan_available,
    scan_phases_fresh,
    scan_table,
)
from parity.bench.scanbound import compute_seconds, pass_work, phase_work, probe_rates, scan_bound, scan_work
from parity.bench.step import SETTLE_STEPS
from parity.bench.suite import (
    TARGETS,
    SuiteConfig,
    kernels_reach,
    render,
    scan_phase_section,
    step_scan_phase_section,
    target_rows,
)
from parity.core.ssm.scan import selective_scan_ref
from parity.testing import rel_err


def test_mambapy_peer_computes_the_same_scan():
    pytest.importorskip("mambapy")
    d = _inputs(2, 37, 8, 4)  # 37: not a power of two, mambapy pads
    args = (d["u"], d["delta"], d["A"], d["B"], d["C"], d["D"])
    kwargs = {"z": d["z"], "delta_bias": d["delta_bias"], "delta_softplus": True}
    assert rel_err(mambapy_scan(*args, **kwargs), selective_scan_ref(*args, **kwargs)) <= 1e-5


def test_bench_scan_rows_for_every_implementation():
    rows = bench_scan(batch=1, length=16, d_inner=4, d_state=2, repeats=2, ref_repeats=1)
    assert [r["impl"] for r in rows] == ["ref", "chunked", "compiled", "mambapy"]
    for r in rows:
        if scan_available(r["impl"]) is None:
            assert r["runs"] == (1 if r["impl"] == "ref" else 2) and r["min_s"] <= r["median_s"] <= r["max_s"]
        else:  # not installed here: a row that says why, no numbers
            assert r["median_s"] is None and r["note"]
    for r in rows:  # each run is timed by pass too
        if r["median_s"] is not None:
            assert 0 < r["forward_s"] and 0 < r["backward_s"] and r["forward_s"] + r["backward_s"] <= 2 * r["max_s"]
            assert r["page_faults"] >= 0
    compiled = rows[2]
    if compiled["median_s"] is not None:  # the compiled row also states its multiple of the bound, by pass too
        assert compiled["x_bound"] == pytest.approx(compiled["median_s"] / compiled["bound_s"])
        assert compiled["forward_x_bound"] == pytest.approx(compiled["forward_s"]
                                                            / compiled["bound"]["forward_bound_s"])


def test_scan_table_shows_times_faults_and_bound():
    from rich.console import Console

    rows = [{"impl": "compiled", "shape": (1, 4, 16, 2), "runs": 3, "median_s": 0.02, "min_s": 0.01, "max_s": 0.03,
             "forward_s": 0.008, "backward_s": 0.012, "page_faults": 4064, "x_bound": 2.5, "forward_x_bound": 2.0,
             "backward_x_bound": 3.0, "bound": scan_bound_example(0.008)},
            {"impl": "mambapy", "shape": (1, 4, 16, 2), "median_s": None, "runs": 0, "note": "not installed"}]
    console = Console(record=True, width=250)
    console.print(scan_table(rows))
    text = console.export_text()
    assert "4064" in text and "2.50x (2.00x, 3.00x)" in text and "not installed" in text


def test_scan_work_counts():
    work = scan_work(2, 3, 5, 7)
    elements, rows = 2 * 3 * 5 * 7, 2 * 3 * 5
    assert work["elements"] == elements and work["exps_per_element"] == 2 and work["flops_per_element"] == 27
    # per step of a row: softplus (exp, log) and the gate (exp) in each pass; 10 FLOPs forward, 26 backward
    assert work["exps_per_row_step"] == 6 and work["flops_per_row_step"] == 36
    assert work["exps"] == 2 * elements + 6 * rows and work["flops"] == 27 * elements + 36 * rows
    plain = scan_work(2, 3, 5, 7, gated=False, softplus=False)
    assert plain["exps"] == 2 * elements and plain["flops"] == 25 * elements + 15 * rows
    assert scan_work(2, 3, 5, 7, gated=False)["exps"] == 2 * elements + 4 * rows
    # 11 (batch, d_inner, L) tensors gated (u, delta, z, out; u, delta, z, g, gu, gdelta, gz), 8 without the gate,
    # plus B, C twice and gB, gC once
    assert work["bytes"] == 4 * (11 * 2 * 5 * 3 + 6 * 2 * 7 * 3)
    assert plain["bytes"] == 4 * (8 * 2 * 5 * 3 + 6 * 2 * 7 * 3)
    # by pass: forward one exp and 6 FLOPs per element, 3 exps and 10 FLOPs per row step, reads u, delta, z,
    # B, C and writes out; backward the rest
    fwd, bwd = pass_work(2, 3, 5, 7).values()
    assert fwd["exps"] == bwd["exps"] == elements + 3 * rows and fwd["flops"] == 6 * elements + 10 * rows
    assert fwd["flops"] + bwd["flops"] == work["flops"]
    assert fwd["bytes"] == 4 * (4 * 2 * 5 * 3 + 2 * 2 * 7 * 3) and fwd["bytes"] + bwd["bytes"] == work["bytes"]


def test_phase_work_adds_up_to_the_passes():
    phases, passes = phase_work(2, 3, 5, 7, gated=False), pass_work(2, 3, 5, 7, gated=False)
    assert {name: list(p) for name, p in phases.items()} == {"forward": ["recurrence", "elementwise"],
                                                          "backward": ["states", "adjoint", "elementwise"]}
    for name, pass_ in passes.items():
        for key in ("exps", "flops"):
            assert sum(w[key] for w in phases[name].values()) == pass_[key]
    assert phases["backward"]["adjoint"]["exps"] == 0  # the adjoint reuses the states pass's decays
    assert {part for _, _, part in KERNEL_PHASES} == {"recurrence", "elementwise", "states", "adjoint"}


def test_scan_phases_need_the_timed_build():
    with pytest.raises(RuntimeError, match="PARITY_SCAN_KERNEL=phases"):
        bench_scan_phases(1, 8, 4, 2, repeats=1)


def test_scan_phases_in_a_fresh_process_add_up_to_the_call():
    if scan_available("compiled"):
        pytest.skip("no compiled kernel here")
    rows = scan_phases_fresh(batch=1, length=64, d_inner=8, d_state=4, repeats=1)
    assert [(r["pass"], r["phase"]) for r in rows[:-1]] == [(p, ph) for p, ph, _ in KERNEL_PHASES]
    assert all(r["ms"] > 0 for r in rows[:-1]) and rows[-1]["work"] is None
    assert sum(r["ms"] for r in rows) == pytest.approx(rows[0]["wall_ms"])
    for r in rows[:-1]:  # a bound on every row but the prologues (theirs is on the epilogue's row)
        assert (r.get("x_bound") is None) == (r["phase"] == "prologue")
    epilogue = next(r for r in rows if r["pass"] == "forward" and r["phase"] == "epilogue")
    prologue = next(r for r in rows if r["pass"] == "forward" and r["phase"] == "prologue")
    assert epilogue["x_bound"] == pytest.approx((epilogue["ms"] + prologue["ms"]) / epilogue["bound_ms"])
    text = "\n".join(scan_phase_section(rows))
    assert "Where the compiled scan's time goes" in text and "outside the kernel's phases" in text
    assert scan_phase_section([]) == []


def test_phase_rows_are_per_call_and_add_up():
    """Timers summed over 2 threads and 4 calls: each row is one call's share, the outside row the rest of the wall."""
    from parity.bench.scan import phase_rows

    runs = [[8.0 * (k + 1) * 1e-3 for k in range(len(KERNEL_PHASES))]] * 3
    rates = [{"exp_per_s": 1e9, "flop_per_s": 1e10}] * 3
    rows = phase_rows(runs, [0.4] * 3, rates, phase_work(2, 16, 8, 4), threads=2, calls=4)
    assert [r["ms"] for r in rows[:-1]] == pytest.approx([(k + 1) for k in range(len(KERNEL_PHASES))])
    assert rows[0]["wall_ms"] == pytest.approx(100.0) and rows[-1]["ms"] == pytest.approx(100.0 - 28.0)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    states = next(r for r in rows if r["phase"] == "states")
    assert states["bound_ms"] == pytest.approx(1e3 * compute_seconds(phase_work(2, 16, 8, 4)["backward"]["states"],
                                                                     rates[0]))


def test_a_steps_scans_by_phase_in_a_fresh_process(capsys):
    """The notebook's 8 scans of one step on the timed build: per scan, every phase timed, adding up to the calls'
    wall time; the report section sets them beside the scan alone where the shapes match; the command prints them."""
    from parity.bench.step import step_scan_phases_fresh
    from parity.cli import main

    if scan_available("compiled"):
        pytest.skip("no compiled kernel here")
    rows = step_scan_phases_fresh("notebook", batch=1, repeats=1)
    assert [(r["pass"], r["phase"]) for r in rows[:-1]] == [(p, ph) for p, ph, _ in KERNEL_PHASES]
    assert all(r["ms"] > 0 for r in rows[:-1]) and rows[0]["scans"] == 8 and tuple(rows[0]["shape"]) == (1, 512, 96, 16)
    assert sum(r["ms"] for r in rows) == pytest.approx(rows[0]["wall_ms"])
    alone = [{**r, "shape": (1, 512, 96, 16), "ms": 2 * r["ms"]} for r in rows]
    text = "\n".join(step_scan_phase_section(rows, alone))
    assert "### The same scans inside a training step" in text and "alone_ms" in text
    bound_ms = sum(r["bound_ms"] for r in rows if r.get("bound_ms"))  # the phases' parts: the whole bound
    whole = pass_work(1, 96, 512, 16)
    assert bound_ms == pytest.approx(1e3 * sum(compute_seconds(whole[p], rows[0]["rates"]) for p in whole))
    assert f"{rows[0]['wall_ms'] / bound_ms:.2f}x its bound" in text
    assert "alone_ms" not in "\n".join(step_scan_phase_section(rows,
                                                               [{**r, "shape": (16, 512, 512, 16)} for r in rows]))
    assert step_scan_phase_section([], alone) == []
    with pytest.raises(ValueError, match="unknown port"):
        step_scan_phases_fresh("nope", 1)
    assert main(["bench", "step", "notebook", "--batch", "1", "--repeats", "1", "--phases"]) == 0
    assert "per scan in notebook's training step" in " ".join(capsys.readouterr().out.split())  # (rich wraps lines)


def test_scan_bound_is_positive_and_names_its_limit():
    bound = scan_bound(1, 32, 8, 4, threads=1)
    assert bound["bound_s"] == max(bound["compute_s"], bound["memory_s"]) > 0
    # max of sums <= sum of maxes
    assert bound["forward_bound_s"] + bound["backward_bound_s"] >= bound["bound_s"] * (1 - 1e-9)
    assert bound["limit"] in ("compute", "memory")
    assert bound["exp_per_s"] > 0 and bound["flop_per_s"] > 0 and bound["bytes_per_s"] > 0


def test_scan_bound_uses_the_rates_it_is_given():
    rates = {"exp_per_s": 1e9, "flop_per_s": 1e10, "lanes": 16}
    bound, work = scan_bound(1, 32, 8, 4, threads=1, rates=rates), scan_work(1, 32, 8, 4)
    assert bound["compute_s"] == pytest.approx(work["exps"] / 1e9 + work["flops"] / 1e10)
    assert bound["exp_per_s"] == 1e9 and bound["flop_per_s"] == 1e10


def test_probe_rates_measure_the_machine_now():
    if scan_available("compiled"):
        pytest.skip("no compiled kernel here, so no probes")
    rates = probe_rates(threads=1)
    assert rates["exp_per_s"] > 0 and rates["flop_per_s"] > 0 and rates["lanes"] >= 1


def test_bench_scan_bounds_its_median_run_with_the_median_rates(monkeypatch):
    """The rates are probed right before each timed run; the compiled row's bound is the median one of those
    runs' bounds, so one fast or slow moment of a shared machine cannot set it."""
    if scan_available("compiled"):
        pytest.skip("no compiled kernel here")
    import parity.bench.scan as bench

    # slow enough to be the limit
    probed = iter([{"exp_per_s": e, "flop_per_s": 1e11, "lanes": 16} for e in (1e3, 4e3, 2e3)])
    monkeypatch.setattr(bench, "probe_rates", lambda: next(probed))
    (row,) = bench_scan(batch=1, length=16, d_inner=4, d_state=2, repeats=3, impls=("compiled",))
    median = scan_bound(1, 16, 4, 2, rates={"exp_per_s": 2e3, "flop_per_s": 1e11, "lanes": 16})
    assert row["bound_s"] == pytest.approx(median["bound_s"]) and row["bound"]["exp_per_s"] == 2e3
    assert row["x_bound"] == pytest.approx(row["median_s"] / median["bound_s"])
    assert row["bound"]["runs_bound_min_s"] < row["bound_s"] < row["bound"]["runs_bound_max_s"]
    assert "ranged from" in bound_summary(row["bound"])
    # and each run over its own bound: bounds 4x apart, so the ratios spread by 4x, less the runs' own spread
    lo, hi, bound = row["x_bound_runs_min"], row["x_bound_runs_max"], row["bound"]
    assert row["min_s"] / bound["runs_bound_max_s"] <= lo <= hi <= row["max_s"] / bound["runs_bound_min_s"]
    assert hi / lo >= 4 * row["min_s"] / row["max_s"] * (1 - 1e-5)  # the FLOPs add a hair to each bound


def test_decode_case_in_a_fresh_process():
    row = measure_decode("notebook", size=8, batch=2, repeats=1)
    assert row["queries"] == 2 * 8 * 8 and row["runs"] == 1
    assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 0


def scan_bound_example(bound_s: float) -> dict:
    """A bound dict shaped like ``scan_bound``'s, without measuring anything."""
    work = scan_work(16, 512, 512, 16)
    return {**work, "exp_per_s": 1e10, "flop_per_s": 4e11, "bytes_per_s": 5e10, "lanes": 16, "threads": 2,
            "compute_s": bound_s, "memory_s": bound_s / 3, "bound_s": bound_s, "forward_bound_s": 0.35 * bound_s,
            "backward_bound_s": 0.65 * bound_s, "limit": "compute"}


def _results(ref_s=100.0, fast_s=1.0, peer_s=2.0, ips=2.5, rss=3000.0, nb_ips=12.0, decode_rss=2000.0, bound_s=0.6,
             roofline=0.85, nb_roofline=0.75, ceiling=None):
    shape = (16, 512, 512, 16)
    scan = [{"impl": i, "median_s": s, "min_s": s, "max_s": s, "runs": 1, "shape": shape, "threads": 2}
            for i, s in (("ref", ref_s), ("chunked", 2 * fast_s), ("compiled", fast_s), ("mambapy", peer_s))]
    bound = scan_bound_example(bound_s)
    scan[2].update(bound_s=bound_s, x_bound=fast_s / bound_s, bound=bound)
    step = [{"port": "original", "batch": 16, "scan": "compiled", "threads": 2, "median_s": 16 / ips, "min_s": 1,
             "max_s": 9, "images_per_s": ips, "peak_rss_mb": rss, "baseline_rss_mb": 700, "gflop_per_step": 450.0,
             "gemm_gflops": 450.0 * ips / 16 / roofline, "fraction_of_gemm": roofline,
             "profile": [{"op": "aten::mm", "ms": 1500.0, "calls": 193, "share": 0.5},
                         {"op": "3 other ops", "ms": 1500.0, "calls": 40, "share": 0.5}]},
            {"port": "notebook", "batch": 32, "scan": "compiled", "threads": 2, "median_s": 32 / nb_ips, "min_s": 1,
             "max_s": 9, "images_per_s": nb_ips, "peak_rss_mb": 1200, "baseline_rss_mb": 700, "gflop_per_step": 128.0,
             "gemm_gflops": 128.0 * nb_ips / 32 / nb_roofline, "fraction_of_gemm": nb_roofline}]
    if ceiling is not None:  # the matrix products' share, as profile_step reports it
        for r, c in zip(step, ceiling):
            matmul_s = 0.9 * r["gflop_per_step"] / r["gemm_gflops"] / c
            parts = {"matmul": matmul_s * 1e3, "scan": matmul_s * 200, "kernels": matmul_s * 50,
                     "other": r["median_s"] * 1e3 - matmul_s * 1250}
            r.update(parts={**parts, "total": sum(parts.values())})
            r.update(matmul_s=matmul_s, matmul_of_gemm=c * 0.97, ceiling=c, scans=12, scan_floor_s=matmul_s / 9,
                     matmuls=[{"op": "aten::mm", "a": "8192 x 256", "b": "256 x 1024", "calls": 12,
                               "ms": matmul_s * 1e3, "gflop": r["gflop_per_step"] * 0.97, "of_gemm": c * 0.97}])
    decode = [{"port": p, "size": s, "batch": 32, "queries": 32 * s * s, "chunk": 32768, "median_s": 0.1 * s,
               "min_s": 0.1, "max_s": 0.2, "runs": 3, "megapixels_per_s": 1.0, "peak_rss_mb": decode_rss,
               "baseline_rss_mb": 600, "output_mb": 1.0, "threads": 2}
              for p in ("original", "notebook") for s in (32, 64, 128, 256)]
    return {"machine": {"cpu": "test", "cuda": False}, "started": "2026-01-01T00:00:00",
            "config": SuiteConfig().__dict__, "scan": scan, "step": step, "decode": decode,
            "matrix": [{"case": "smoke", "median_s": 50.0, "min_s": 50.0, "max_s": 50.0, "runs": 1}]}


def test_targets_met_and_missed():
    met = {r["target"]: r["met"] for r in target_rows(_results())}
    assert len(met) == 9 and all(met.values())
    missed = {r["target"]: r["met"] for r in target_rows(_results(ref_s=5.0, peer_s=0.5, ips=1.5, rss=5000.0,
                                                                    nb_ips=8.0, decode_rss=4500.0, bound_s=0.4,
                                                                    roofline=0.79, nb_roofline=0.7))}
    assert not any(missed.values())


def test_a_roofline_target_above_the_measured_ceiling_is_named_out_of_reach(tmp_path):
    missed = target_rows(_results(roofline=0.5, nb_roofline=0.4, ceiling=(0.7, 0.9)))
    met = {r["target"]: r["met"] for r in missed}
    assert met[TARGETS["roofline-original"]] == "beyond"  # 0.8 asked, 0.7 possible: no work on the rest can meet it
    # 0.7 asked, 0.9 possible, but the other ops alone leave 0.42 at most: no work on the kernels can meet it
    nb = _results(roofline=0.5, nb_roofline=0.4, ceiling=(0.7, 0.9))["step"][1]
    reach = nb["gflop_per_step"] / ((nb["parts"]["matmul"] + nb["parts"]["other"]) / 1e3 + nb["scan_floor_s"]) \
        / nb["gemm_gflops"]
    assert kernels_reach(nb) == pytest.approx(reach) and reach < 0.7
    assert met[TARGETS["roofline-notebook"]] == "beyond-kernels"
    assert f"{reach:.2f} with the kernels at their best" in next(
        r["measured"] for r in missed if r["target"] == TARGETS["roofline-notebook"])
    close = {r["target"]: r["met"] for r in target_rows(_results(nb_roofline=0.65, ceiling=(0.9, 0.95)))}
    assert kernels_reach(_results(nb_roofline=0.65, ceiling=(0.9, 0.95))["step"][1]) > 0.7
    assert close[TARGETS["roofline-notebook"]] is False  # within both: a plain miss
    assert "ceiling 0.70" in next(r["measured"] for r in missed if r["target"] == TARGETS["roofline-original"])
    assert any("its 12 scans take at least" in r["measured"] for r in missed)
    text = render(_results(roofline=0.5, nb_roofline=0.4, ceiling=(0.7, 0.9)), tmp_path / "b.md", "parity bench")
    assert "out of reach here" in text and "### The step's matrix products" in text and "8192 x 256" in text
    assert "beyond the kernels here" in text and "*Beyond the kernels here*" in text
    # the gap to the ceiling by part: the scans above their bound (0.2 of matmul_s, bound 1/9 of it) and the rest
    assert "### The step against its ceiling" in text and "| selective scans (12, forward and backward)" in text
    step = _results(roofline=0.5, nb_roofline=0.4, ceiling=(0.7, 0.9))["step"][0]
    gap = step["parts"]["total"] - step["parts"]["matmul"] - step["scan_floor_s"] * 1e3
    share = (step["parts"]["scan"] - step["scan_floor_s"] * 1e3) / gap
    assert f"the scans above their bound are {share:.0%} of the gap" in text
    reached = {r["target"]: r["met"] for r in target_rows(_results(ceiling=(0.9, 0.9)))}
    assert reached[TARGETS["roofline-original"]] is True


def test_report_names_the_gpu_gap_and_embeds_plots(tmp_path):
    text = render(_results(), tmp_path / "benchmarks.md", "parity bench")
    assert "No GPU was lent" in text and "`parity bench`" in text
    assert "x_bound" in text and "GFLOP/s" in text  # the compiled scan against its bound, and how it was derived
    assert "### Where a step's time goes" in text and "| aten::mm" in text  # the profile, where it was taken
    assert "![" in text and (tmp_path / "benchmarks_files" / "scan.png").exists()
    assert (tmp_path / "benchmarks_files" / "decode.png").exists()
    assert "**no**" not in text  # every target met in this synthetic run...
    assert "**no**" in render(_results(ips=1.0), tmp_path / "b.md", "parity bench")  # ...and a miss is shown


def test_a_fresh_case_does_not_inherit_the_parents_peak_memory():
    from parity.core.memory import peak_rss_mib

    ballast = torch.ones(256, 1024, 1024)  # 1 GiB, touched: the parent's peak is now above 1 GiB
    row = measure_decode("notebook", size=8, batch=2, repeats=1)
    assert peak_rss_mib() > 1024 + row["baseline_rss_mb"] * 0.5 and ballast.sum() > 0
    assert row["peak_rss_mb"] < peak_rss_mib() - 512  # the case's own peak, not the parent's


def test_step_case_reports_its_fraction_of_the_gemm_rate():
    from parity.bench.step import measure_step

    row = measure_step("notebook", batch=1, repeats=1, gemm_size=256)
    assert row["gflop_per_step"] > 0 and row["gemm_gflops"] > 0
    assert 2 <= row["warmup_steps"] <= 1 + SETTLE_STEPS  # the first step, then at least one more until settled
    assert row["fraction_of_gemm"] == pytest.approx(row["gflop_per_step"] / row["median_s"] / row["gemm_gflops"])
    ops = row["profile"]
    assert any(r["op"] == "aten::mm" for r in ops) and sum(r["share"] for r in ops) == pytest.approx(1.0)
    # the matrix products by shape: their time bounds the step's, and their FLOPs are most of the counted ones
    mm = row["matmuls"]
    assert mm and row["matmul_s"] == pytest.approx(sum(r["ms"] for r in mm) / 1e3)
    # structure only: how the times compare depends on the load beside the test (speed lives in `parity bench`)
    assert row["matmul_s"] > 0 and row["median_s"] > 0
    # the notebook's encoder: 4 bidirectional layers, two mixers each, one scan per mixer
    assert row["scans"] == 8 and row["scan_floor_s"] > 0
    assert row["ceiling"] == pytest.approx(row["gflop_per_step"] / (row["matmul_s"] + row["scan_floor_s"])
                                           / row["gemm_gflops"])
    # the same profile by part: the matrix products as above, the scans' kernel calls, every op counted once
    parts = row["parts"]
    assert parts["matmul"] == pytest.approx(row["matmul_s"] * 1e3) and parts["scan"] > 0 and parts["kernels"] > 0
    assert parts["total"] == pytest.approx(sum(r["ms"] for r in ops))
    assert 0.5 < sum(r["gflop"] for r in mm) / row["gflop_per_step"] <= 1.0 + 1e-6


def test_settle_steps_until_one_takes_no_page_faults():
    import mmap

    from parity.bench.step import settle

    def faulting(n):  # a step whose first n calls touch a fresh 8 MiB mapping, page by page
        calls = []

        def step():
            calls.append(1)
            if len(calls) <= n:
                with mmap.mmap(-1, 8 << 20) as m:
                    for page in range(0, 8 << 20, 4096):
                        m[page] = 1
        return step

    probes = []
    assert settle(faulting(2), lambda: probes.append(1)) == 3 and len(probes) == 3  # each step after a probe
    assert settle(faulting(99), lambda: None) == SETTLE_STEPS  # never quiet: stops at the cap


def test_step_parts_sort_every_op_once():
    from parity.bench.step import step_parts

    ops = [("aten::mm", 50.0, 4), ("aten::addmm_", 5.0, 1), ("parity::scan_forward", 7.0, 2),
           ("parity::scan_backward", 9.0, 2), ("parity::conv_forward", 2.0, 4), ("MambaInner", 3.0, 2),
           ("aten::add", 1.5, 9)]
    assert step_parts(ops) == {"matmul": 55.0, "scan": 16.0, "kernels": 2.0, "other": 4.5, "total": 77.5}


def test_matmul_flops_from_profiled_shapes():
    from parity.bench.step import matmul_gflop

    assert matmul_gflop("aten::mm", [[8, 3], [3, 5]]) == 2 * 8 * 3 * 5 / 1e9
    assert matmul_gflop("aten::addmm", [[5], [8, 3], [3, 5]]) == 2 * 8 * 3 * 5 / 1e9
    assert matmul_gflop("aten::bmm", [[4, 8, 3], [4, 3, 5]]) == 4 * 2 * 8 * 3 * 5 / 1e9


def test_bench_scan_phases_command_prints_the_phase_table(capsys):
    from parity.cli import main

    if scan_available("compiled"):
        pytest.skip("no compiled kernel here")
    assert main(["bench", "scan", "--phases", "--batch", "1", "--length", "32", "--d-inner", "8", "--d-state", "4",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "Compiled scan by phase" in out and "adjoint" in out and "outside the kernel's phases" in out


def test_gpu_check_without_cuda_is_one_line(capsys):
    from parity.cli import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: `parity bench gpu` would run")
    assert main(["bench", "gpu", "--out", "unused.md"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a CUDA GPU" in err and "\n" not in err


def test_gpu_golden_check_runs_its_code_on_the_cpu():
    """The same comparison code as on the GPU, pointed at the CPU: within tolerance, every tensor compared."""
    from parity.bench.gpu import golden_on_gpu

    rows = golden_on_gpu("cpu")
    assert [r["port"] for r in rows] == ["original", "notebook"] and all(r["passed"] for r in rows)


def test_gpu_report_names_every_number():
    from parity.bench.gpu import render_gpu_report

    results = {
        "device": "NVIDIA H200", "torch": "2.14.1", "cuda": "13.0", "python": "3.11.7", "scan": "parallel",
        "golden": [{"port": "original", "outputs": (1e-6, "pred"), "gradients": (2e-5, "lps"), "passed": True},
                   {"port": "notebook", "outputs": (3e-3, "loss"), "gradients": (0.0, ""), "passed": False}],
        "tf32": {"matmul": False, "cudnn": True}, "repeats": 7, "elapsed_s": 61.4,
        "steps": [{"port": "original", "batch": 16, "scan": scan, "median_s": 0.25, "min_s": 0.24, "max_s": 0.3,
                   "images_per_s": 64.0, "peak_gpu_mb": 3000.0, "gflop_per_step": 450.0, "gemm_gflops": 50000.0,
                   "fraction_of_gemm": 0.036, "gpu_busy_s": 0.1, "kernels": 1234} for scan in ("cuda", "chunked")],
        "scans": [{"scan": "cuda", "shape": (16, 512, 512, 16), "median_s": 0.0093, "peak_gpu_mb": 2066.6}]}
    text = render_gpu_report(results)
    assert "NVIDIA H200" in text and "--repeats 7" in text and "took 61 s" in text
    assert ("| original | 16 | parallel | 0.2500 (0.2400-0.3000) | 64.0 | 450.0 | 50.0 | 0.036 | 40% (1234) | 3000 |"
            in text)
    assert "| original | 16 | chunked | 0.2500" in text
    assert "| notebook | 3.00e-03 (loss) | 0.00e+00 (-) | **no** |" in text
    assert "TF32 in convolutions)" in text
    assert "(16, 512, 512, 16)" in text and "| parallel | 9.30 | 2067 |" in text
    assert "mamba_ssm is not installed here" in text
    fused = render_gpu_report({**results, "scan": "mamba_ssm fused kernel"})
    assert "the Mamba scan on the GPU: mamba_ssm fused kernel." in fused and "not installed" not in fused


def test_gpu_scan_timing_code_runs_on_the_cpu():
    from parity.bench.gpu import scan_times_on_gpu

    rows = scan_times_on_gpu(repeats=1, device="cpu", shape=(2, 8, 33, 4))
    assert [r["scan"] for r in rows] == ["cuda", "chunked"] and all(r["median_s"] > 0 for r in rows)


@pytest.mark.slow
def test_gpu_step_code_runs_on_the_cpu():
    """step_on_gpu's code pointed at the CPU: a positive time, the step's FLOPs counted, a fraction of GEMM below 1."""
    from parity.bench.gpu import step_on_gpu

    row = step_on_gpu("notebook", repeats=1, device="cpu", gemm_size=256)
    assert row["batch"] == 32 and row["median_s"] > 0 and row["gflop_per_step"] > 100
    assert row["images_per_s"] == pytest.approx(32 / row["median_s"])
    # the fraction's definition, not its value (a timing under load says nothing about the code)
    assert row["fraction_of_gemm"] == pytest.approx(row["gflop_per_step"] / row["median_s"] / row["gemm_gflops"])


def test_jobs_throughput_section_from_given_timings():
    from parity.bench.jobs import VARIANTS, jobs_section

    rows = [{"jobs": 1, "runs": 4, "steps_per_run": 128, "seconds": 80.0, "runs_per_minute": 3.0, "speedup": 1.0},
            {"jobs": 2, "runs": 4, "steps_per_run": 128, "seconds": 50.0, "runs_per_minute": 4.8, "speedup": 1.6}]
    text = "\n".join(jobs_section(rows, cores=2))
    assert "| 2 | 4 | 50.0 | 4.80 | 1.60x |" in text and f"{len(VARIANTS)} variants" in text and "2 cores" in text
    assert jobs_section([], 2) == []


def test_jobs_throughput_case_runs_its_matrix_at_two_jobs():
    from parity.bench.jobs import matrix_seconds

    assert matrix_seconds(2, steps=2) > 0


def test_strict_fp32_turns_tf32_off_and_restores_it():
    from parity.bench.gpu import strict_fp32

    torch.backends.cudnn.allow_tf32 = True
    with strict_fp32():
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32


def test_allocator_comparison_runs_each_case_under_each_setting():
    import platform

    from parity.bench.allocator import compare_allocators

    rows = compare_allocators(scan_shape=(2, 64, 32, 4), scan_repeats=1, step_batch=1, step_repeats=1)
    if platform.libc_ver()[0] != "glibc":
        assert [r["allocator"] for r in rows] == ["glibc's defaults"] * 2
        return
    assert [(r["case"].split()[0], r["allocator"]) for r in rows] == [
        ("compiled", "glibc's defaults"), ("notebook", "glibc's defaults"),
        ("compiled", "freed memory kept"), ("notebook", "freed memory kept")]
    steps = [r for r in rows if r["case"].startswith("notebook")]
    assert steps[0]["process_allocator"].startswith("glibc's defaults (PARITY_SYSTEM_MALLOC=1)")
    assert steps[1]["process_allocator"].startswith("glibc, freed memory kept for reuse")  # what the child ran with
    assert all(r["median_s"] > 0 and r["page_faults"] >= 0 for r in rows) and steps[0]["peak_rss_mb"] > 0
