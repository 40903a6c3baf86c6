"""Results of example and benchmark runs: thread count, run metadata, the JSON record and the
reStructuredText page rendered from it (``docs/results/``).

A script writes every number it reports with :func:`write_results`, which adds the command
line, the date, the machine and the library versions. ``python -m pyrogen.analysis.report
FILE.json ...`` renders each record to ``FILE.rst`` next to it, and ``python -m
pyrogen.analysis.report docs/results`` renders every record of that folder's registry
(``registry.json``) and its ``index.rst`` (``--check`` fails instead when a page differs from
its rendering), so a page never says more, or other, than its record.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pyrogen.analysis.pages import REGISTRY, render, render_index
from pyrogen.util import check_count

__all__ = [
    "reduced_from_defaults",
    "render",
    "run_metadata",
    "seed_spread",
    "set_threads",
    "write_results",
]

_PACKAGES = ("torch", "pyro-ppl", "numpy", "arviz", "scikit-learn", "pyrogen")


def set_threads(threads: int | None) -> int:
    """Set the number of CPU threads torch uses (``torch.set_num_threads``) and print it.

    On a machine shared with other processes, one thread per process is often much faster
    than torch's default of one per core.

    Args:
        threads: the thread count (>= 1), or ``None`` to keep torch's current setting.
    Returns:
        the number of threads in use.
    Raises:
        ValueError: ``threads`` is not a positive int.
    """
    if threads is not None:
        check_count(threads, "threads")
        torch.set_num_threads(threads)
    n = torch.get_num_threads()
    print(f"using {n} CPU thread{'s' if n != 1 else ''} (change with --threads)", flush=True)
    return n


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(
    script: str | Path, argv: Sequence[str] | None = None, *, launcher: str = "python"
) -> dict[str, Any]:
    """What a results record says about its run: command, UTC date, machine, versions.

    Args:
        script: the script that produced the numbers (its path is made relative to the
            working directory when it lies below it).
        argv: the arguments the script parsed (``None``: ``sys.argv[1:]``).
        launcher: what ran the script, the command's first words (e.g. ``"torchrun
            --nproc_per_node 2"`` for several processes).
    Returns:
        a JSON-serialisable dict with keys ``command``, ``date``, ``machine``, ``versions``.
    """
    script = Path(script).resolve()
    try:
        script = script.relative_to(Path.cwd())
    except ValueError:
        pass
    args = list(sys.argv[1:] if argv is None else argv)
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    machine = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return {
        "command": shlex.join([*shlex.split(launcher), str(script), *args]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "versions": versions,
    }


def write_results(
    path: str | Path,
    results: dict[str, Any],
    *,
    title: str,
    script: str | Path,
    argv: Sequence[str] | None = None,
    description: str = "",
    started: float | None = None,
    reduced: str = "",
    launcher: str = "python",
) -> dict[str, Any]:
    """Write ``results`` with its run metadata as JSON (the record a results page renders).

    Args:
        path: the JSON file (its folder is created).
        results: every number the script reports, nested dicts / lists of JSON values.
        title: the page title.
        script, argv, launcher: as in :func:`run_metadata`.
        description: a paragraph saying what was measured, on what data, in which units.
        started: ``time.perf_counter()`` at the start of the run, to record its wall time.
        reduced: for a run smaller than the script's documented full mode, what was reduced
            (e.g. ``"--epochs 10 (full mode: 100)"``); its page says so in a warning.
    Returns:
        the record written: ``{"title", "description", "meta", "results"}``.
    Raises:
        TypeError: ``results`` holds something JSON cannot store.
    """
    meta = run_metadata(script, argv, launcher=launcher)
    if started is not None:
        meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    if reduced:
        meta["reduced"] = reduced
    record = {"title": title, "description": description, "meta": meta, "results": results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def reduced_from_defaults(args: Any, defaults: dict[str, Any]) -> str:
    """The ``reduced`` note of :func:`write_results` for a run whose options differ from the
    script's full mode: ``"--name value (full mode: default)"`` for every ``defaults`` key
    whose attribute of ``args`` (an ``argparse.Namespace``) differs, joined by ``"; "``;
    ``""`` for a full-mode run."""
    return "; ".join(
        f"--{k.replace('_', '-')} {getattr(args, k)} (full mode: {v})"
        for k, v in defaults.items()
        if getattr(args, k) != v
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _summary(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    n = len(values)
    var = sum((x - mean) ** 2 for x in values) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "sd": math.sqrt(var), "min": min(values), "max": max(values)}


def _spread(tables: list[Any], quantities: Sequence[str] | None) -> dict[str, Any]:
    """The spread of one level of the per-seed tables (dicts with the same keys)."""
    keys = list(dict.fromkeys(k for t in tables if isinstance(t, dict) for k in t))
    row: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key in keys:
        values = [t[key] for t in tables if isinstance(t, dict) and key in t]
        if all(isinstance(v, dict) for v in values):
            sub = _spread(values, quantities)
            if sub:
                nested[key] = sub
        elif all(_is_number(v) for v in values) and (quantities is None or key in quantities):
            row["seeds"] = max(row.get("seeds", 0), len(values))
            row |= {f"{key} {stat}": x for stat, x in _summary(values).items()}
    if row and nested:
        nested[""] = row
        return nested
    return row or nested


def seed_spread(
    per_seed: Mapping[Any, Mapping[str, Any]],
    quantities: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The spread over seeds of every number of a record that a script measured once per seed.

    ``per_seed[seed]`` is one seed's results, e.g. ``{"MAF": {"test_nats": -101.2, ...}, ...}``
    (nested dicts of any depth). The spread has the same nesting; each dict of numbers becomes
    ``{"seeds": n, "<quantity> mean": ..., "<quantity> sd": ..., "<quantity> min": ...,
    "<quantity> max": ...}`` over the seeds that have it, in the quantity's own units, with
    the sample standard deviation (``n - 1`` in the denominator; 0 for one seed). Booleans,
    strings and lists are left out. (A dict holding both numbers and dicts keeps its numbers'
    spread under the key ``""``.)

    Args:
        per_seed: seed -> that seed's results (any JSON-able seed keys).
        quantities: the quantity names to summarise (default: every numeric one).
    Returns:
        the spread, nested as the results.
    Raises:
        ValueError: ``per_seed`` is empty.
    Example:
        >>> spread = seed_spread({0: {"MAF": {"nats": -101.0}}, 1: {"MAF": {"nats": -103.0}}})
        >>> spread["MAF"]["nats mean"], spread["MAF"]["nats sd"], spread["MAF"]["seeds"]
        (-102.0, 1.4142135623730951, 2)
    """
    if not per_seed:
        raise ValueError("per_seed must hold at least one seed's results")
    return _spread(list(per_seed.values()), quantities)


def _targets(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(page, rendering) for each JSON record, or each record and the index of a folder."""
    targets = []
    for path in paths:
        if path.is_dir():
            # named as from the project root (docs/results/NAME.json), wherever it runs
            folder = path.resolve()
            where = f"{folder.parent.name}/{folder.name}"
            registry = json.loads((path / REGISTRY).read_text())
            records = {}
            for name in registry:
                record = path / f"{name}.json"
                records[name] = json.loads(record.read_text())
                page = render(
                    records[name],
                    source=f"{where}/{name}.json",
                    full_command=registry[name].get("command", ""),
                )
                targets.append((record.with_suffix(".rst"), page))
            targets.append((path / "index.rst", render_index(registry, records, source=where)))
        else:
            page = render(json.loads(path.read_text()), source=path.as_posix())
            targets.append((path.with_suffix(".rst"), page))
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Render each JSON record (or each record of a results folder, and its index) to the
    ``.rst`` page next to it, or ``--check`` the pages."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "records", nargs="+", type=Path, help="results JSON files or results folders"
    )
    parser.add_argument("--check", action="store_true", help="fail if a page is not current")
    args = parser.parse_args(argv)
    stale = []
    for target, page in _targets(args.records):
        if args.check:
            if not target.exists() or target.read_text() != page:
                stale.append(str(target))
        else:
            target.write_text(page)
            print(f"wrote {target}")
    if stale:
        print("not the rendering of their JSON: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
