"""Benchmark arbitrary-scale decoding: encode a batch of 32x32 images once, then decode it on an
S x S grid of pixel coordinates, queries in chunks (``parity.evaluation.evaluate.decode_chunked``) so that
memory stays bounded at any S. Time per decode and peak memory, in a fresh process per case."""

from __future__ import annotations

import argparse
import json
import statistics
import time

from ..core.memory import peak_rss_mib
from .fresh import run_fresh
from .step import PORTS, checked_port, cifar10_model


def measure_in_process(port: str, size: int, batch: int, repeats: int) -> dict:
    import torch

    from parity.core.coords import make_grid
    from parity.evaluation.evaluate import DECODE_CHUNK, decode_chunked
    from parity.experiment.config import baseline

    convention = baseline(port).train.coords  # each source's coordinate grid
    model = cifar10_model(port).eval()
    images = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    coords = make_grid(size, size, convention).unsqueeze(0).expand(batch, -1, -1)
    baseline = peak_rss_mib()
    times = []
    with torch.no_grad():
        tokens = model.encode(images)
        warm = make_grid(32, 32, convention).unsqueeze(0).expand(batch, -1, -1)
        decode_chunked(model, tokens, warm)  # warm-up at the native size: cheap next to a 256x256 decode
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = decode_chunked(model, tokens, coords)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"port": port, "size": size, "batch": batch, "queries": batch * size * size, "chunk": DECODE_CHUNK,
            "median_s": med, "min_s": min(times), "max_s": max(times), "runs": len(times),
            "megapixels_per_s": batch * size * size / med / 1e6, "peak_rss_mb": peak_rss_mib(),
            "baseline_rss_mb": baseline,
            "output_mb": out.numel() * out.element_size() / 2 ** 20, "threads": torch.get_num_threads()}


def measure_decode(port: str, size: int, batch: int = 32, repeats: int = 3) -> dict:
    checked_port(port)
    return run_fresh("parity.bench.decode", [port, "--size", str(size), "--batch", str(batch), "--repeats",
                                             str(repeats)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", choices=PORTS)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    print(json.dumps(measure_in_process(a.port, a.size, a.batch, a.repeats)))
