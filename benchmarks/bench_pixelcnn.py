"""PixelCNN ancestral sampling: each pixel's causal window against full-image network passes.

Times ``PixelCNN.sample`` (the network runs on the rows ``i - R .. i`` and columns
``j - R .. j + R`` of pixel ``(i, j)``, ``R = network.receptive_field``) against the full-image
reference (one network pass over the whole image per pixel) on the MNIST example's network
(28x28 binary images, 32 gated hidden channels, 5 layers), and checks that both draw the same
images from the same seed. Median of ``--repeats`` runs, round-robin.

Run: ``python benchmarks/bench_pixelcnn.py [--threads 1] [--num-samples 16] [--quick]
[--out results.json]``; ``--out`` writes the record its results page renders
(``docs/results/bench_pixelcnn.rst``). With every other benchmark: ``python -m benchmarks.run
--only pixelcnn`` (``cases`` is this module's registry entry, see :mod:`benchmarks.harness`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyrogen.analysis.report import run_metadata, write_results
from pyrogen.distributions import PixelCNN
from pyrogen.nn import PixelCNNNetwork


def cases(quick: bool = False, device: str = "cpu", num_samples: int = 2) -> list[dict]:
    """The registry entry (:mod:`benchmarks.harness`): ``num_samples`` 28x28 draws (8x8 when
    ``quick``), causal windows (target 3x) against full-image passes, the same seed."""
    size = 8 if quick else 28
    torch.manual_seed(0)
    with torch.device(device):
        net = PixelCNNNetwork(hidden_channels=32, num_layers=5, gated=True)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        d = PixelCNN(net, (1, size, size))

    def window():
        torch.manual_seed(1)
        return d.sample((num_samples,))

    def full():
        torch.manual_seed(1)
        return d._sample((num_samples,), None)

    name = f"PixelCNN sample {size}x{size} n={num_samples}"
    return [
        {"case": name, "library": "pyrogen", "fn": window, "target": 3.0},
        {"case": name, "library": "full-image passes", "fn": full},
    ]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="PixelCNN sampling: window vs full passes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small images (smoke test)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    size, n, repeats = (8, 2, 1) if args.quick else (28, args.num_samples, args.repeats)
    torch.manual_seed(0)
    net = PixelCNNNetwork(hidden_channels=32, num_layers=5, gated=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = PixelCNN(net, (1, size, size))
    runs = {"window": lambda: d.sample((n,)), "full image": lambda: d._sample((n,), None)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    draws = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            torch.manual_seed(1)
            start = time.perf_counter()
            draws[name] = fn()
            times[name].append(time.perf_counter() - start)
    identical = bool(torch.equal(draws["window"], draws["full image"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    speedup = med["full image"] / med["window"]
    print(f"{size}x{size}, {n} samples, receptive field R = {net.receptive_field}")
    for name, t in med.items():
        print(f"{name:12s} {t:8.2f} s")
    print(f"speed-up {speedup:.2f}x, identical samples: {identical}")
    results = {"meta": run_metadata(__file__, argv), "seconds": med, "speedup": speedup,
               "identical": identical, "image_size": size, "num_samples": n}  # fmt: skip
    if args.out:
        write_results(
            args.out,
            {k: v for k, v in results.items() if k != "meta"},
            title="PixelCNN sampling: causal windows against full-image passes",
            script=__file__,
            argv=argv,
            description=__doc__.split("\nRun:")[0],
            reduced="--quick: 8x8 images, 2 samples, 1 repeat" if args.quick else "",
        )
    return results


if __name__ == "__main__":
    main()
