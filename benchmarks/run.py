"""Every benchmark case against its peers, in one process: ``python -m benchmarks.run`` (or
``python benchmarks/run.py`` from the repository root).

Collects the cases of every registered module (``cases(quick, device)`` in
``benchmarks/bench_<name>.py``, see :mod:`benchmarks.harness`; a module that is absent or
has no ``cases`` is skipped), times them round-robin with the median of ``--repeats`` calls
at each ``--threads`` count, prints the table of medians and ratios and the speed-up of each
pyrogen row over the fastest other row with its target, and writes everything as JSON
(:func:`pyrogen.analysis.report.write_results`).

Registered modules: ``logprob`` (MAF and RealNVP ``log_prob`` forward+backward, eager and
compiled), ``sequential`` (MAF sampling, IAF inverse), ``pixelcnn`` (PixelCNN sampling) and,
where present, ``objectives``, ``autoflow``, ``cd`` and ``inference_data``.

Run: ``python -m benchmarks.run [--threads 1 2] [--repeats 5] [--only logprob sequential]
[--device cuda] [--no-compile] [--quick] [--out docs/results/bench_all.json]``.
``--device cuda`` needs a GPU (an error otherwise); CPU is the default.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as ``python benchmarks/run.py``, the command records show
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness
from pyrogen.analysis.report import set_threads, write_results

MODULES = ("logprob", "sequential", "pixelcnn", "objectives", "autoflow", "cd", "inference_data")
HERE = Path(__file__).resolve().parent


def collect(names, quick: bool, device: str, compile: bool = True) -> list[dict]:
    """The cases of the registered modules in ``names`` that exist and define ``cases``."""
    out = []
    for name in names:
        if not (HERE / f"bench_{name}.py").exists():
            print(f"benchmarks/bench_{name}.py: not present, skipped")
            continue
        module = importlib.import_module(f"benchmarks.bench_{name}")
        if not hasattr(module, "cases"):
            print(f"benchmarks/bench_{name}.py has no cases(): skipped")
            continue
        kwargs = {"quick": quick, "device": device}
        if "compile" in inspect.signature(module.cases).parameters:
            kwargs["compile"] = compile
        out += [harness.check_case(c) for c in module.cases(**kwargs)]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="pyrogen against its peers, every case")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=MODULES, default=list(MODULES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled rows")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke)")
    parser.add_argument(
        "--out",
        default=None,
        help="JSON record (default docs/results/bench_all.json; with --quick none unless given)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    started = time.perf_counter()
    repeats = 1 if args.quick else args.repeats
    results: dict = {"device": args.device, "repeats": repeats, "runs": {}}
    out = args.out or (
        None if args.quick else str(HERE.parent / "docs" / "results" / "bench_all.json")
    )
    previous = torch.get_num_threads()
    try:
        for threads in args.threads:
            set_threads(threads)
            cases = collect(args.only, args.quick, args.device, not args.no_compile)
            print(harness.format_rows([], header=True))
            rows = harness.time_cases(cases, repeats=repeats, device=args.device)
            summary = harness.summarize(rows)
            print(f"\n{threads} thread(s): speed-up of pyrogen over the fastest other row")
            print(harness.format_summary(summary))
            for note in dict.fromkeys(r["note"] for r in rows if "note" in r):
                print(note)
            results["runs"][f"threads={threads}"] = {"rows": rows, "summary": summary}
            # the next thread count builds its own models: free these first (Pyro's transforms
            # keep their last call's tensors, about 1 GB per MAF at d=64; two sets of every
            # case's models ran the 2-core, 24 GiB machine out of memory)
            del cases
            gc.collect()
            if out is not None:  # after every thread count: a long run keeps what it measured
                _write(out, results, argv, started)
    finally:
        torch.set_num_threads(previous)
    return results


def _write(out: str, results: dict, argv, started: float) -> None:
    write_results(
        out,
        results,
        title="pyrogen against Pyro, zuko, nflows and normflows",
        script=__file__,
        argv=argv,
        description=(
            "Median milliseconds per call, round-robin over the libraries of each case; ratio "
            "is a row's time over pyrogen's (> 1: pyrogen is faster); speed-up is the fastest "
            "other row's time over each pyrogen row's."
        ),
        started=started,
    )
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
