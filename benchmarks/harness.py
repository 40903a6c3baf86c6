"""The benchmark registry: cases as plain dicts, timed round-robin against their peers.

Interface (what a benchmark module provides so that ``python -m benchmarks.run`` includes it):
a module ``benchmarks/bench_<name>.py`` defines

.. code-block:: python

    def cases(quick: bool = False, device: str = "cpu") -> list[dict]:
        ...

returning one dict per (case, library) pair, with the keys

- ``"case"`` (str): the comparison, e.g. ``"MAF log_prob fwd+bwd d=16"``; every row with the
  same ``case`` is timed together and compared;
- ``"library"`` (str): who computes it, e.g. ``"pyrogen"``, ``"Pyro"``, ``"zuko"``,
  ``"scikit-learn"``;
- ``"fn"`` (callable, no arguments): one call is one timed repeat (forward and backward
  included where the case says so); the harness synchronizes CUDA after it;
- ``"ours"`` (bool, optional, default ``library.startswith("pyrogen")``): a row of pyrogen's
  (e.g. ``"pyrogen"`` and ``"pyrogen compiled"``); the first one of a case is the one the
  ratios divide by, and each is compared with the fastest row that is not ours;
- ``"target"`` (float, optional, on an ours row): the speed-up ``fastest other row / this
  row`` it must reach (e.g. ``10.0``: ten times faster than the fastest peer; ``0.5``: at most
  twice its time);
- ``"note"`` (str, optional): a short remark printed under the table (e.g. compile time).

Rows whose peer library is not installed are simply left out (catch ``ImportError`` when
building them). ``quick=True`` asks for tiny sizes (the smoke test runs every module that way);
``device`` is ``"cpu"`` or ``"cuda"``. Build models when ``cases`` is called, not at import.

:func:`time_cases` times a list of such dicts: one warm-up call of each, then ``repeats``
rounds in which every row of a case is called once in turn (round-robin, so that a slow
patch on a shared machine hits every library alike), and reports the median of each row and
its ratio to the first ``ours`` row (> 1: pyrogen is faster); :func:`summarize` gives each
ours row's speed-up over the fastest other row and whether it meets its target.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Case", "check_case", "summarize", "time_cases"]

Case = dict[str, Any]
_KEYS = {"case", "library", "fn", "ours", "target", "note"}


def check_case(case: Case) -> Case:
    """Validate one case dict (see the module docstring) and fill in ``ours``.

    Raises:
        TypeError: ``case`` is not a dict, ``fn`` is not callable, or ``case``/``library`` are
            not strings.
        ValueError: a key is missing or unknown.
    """
    if not isinstance(case, dict):
        raise TypeError(f"a case must be a dict, got {type(case).__name__}")
    missing = {"case", "library", "fn"} - case.keys()
    if missing:
        raise ValueError(f"case is missing keys {sorted(missing)}: {case!r}")
    if unknown := case.keys() - _KEYS:
        raise ValueError(f"case has unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    if not isinstance(case["case"], str) or not isinstance(case["library"], str):
        raise TypeError("case['case'] and case['library'] must be strings")
    if not callable(case["fn"]):
        raise TypeError(f"case['fn'] must be callable, got {type(case['fn']).__name__}")
    return {"ours": case["library"].startswith("pyrogen"), **case}


def _call(fn: Callable[[], Any], device: str) -> float:
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def time_cases(
    cases: Iterable[Case], *, repeats: int = 5, device: str = "cpu", log=print
) -> list[dict[str, Any]]:
    """Time every case round-robin; median of ``repeats`` calls after one warm-up call.

    Returns:
        one row per case dict: ``case``, ``library``, ``ours``, ``ms`` (median, milliseconds),
        ``ms_all`` (every repeat), ``ratio`` (this row's median over the first ``ours`` row's),
        ``target`` and ``note`` where given.
    Raises:
        ValueError: ``repeats < 1``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    groups: dict[str, list[Case]] = {}
    for c in map(check_case, cases):
        groups.setdefault(c["case"], []).append(c)
    rows = []
    for name, group in groups.items():
        for c in group:  # warm-up (also lazy initialisation, compilation ...)
            _call(c["fn"], device)
        times: list[list[float]] = [[] for _ in group]
        for _ in range(repeats):
            for c, t in zip(group, times, strict=True):
                t.append(_call(c["fn"], device))
        medians = [statistics.median(t) for t in times]
        ours = next((m for c, m in zip(group, medians, strict=True) if c["ours"]), None)
        for c, t, m in zip(group, times, medians, strict=True):
            row = {"case": name, "library": c["library"], "ours": c["ours"], "ms": m, "ms_all": t}
            row["ratio"] = m / ours if ours else None
            for key in ("target", "note"):
                if key in c:
                    row[key] = c[key]
            rows.append(row)
        if log is not None:
            log(format_rows([r for r in rows if r["case"] == name], header=False))
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ours row of each case: the fastest other row, the speed-up ``fastest other / ours``
    and whether it meets the row's target (``None`` without a target)."""
    out = []
    for name in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == name]
        others = [r for r in group if not r["ours"]]
        if not others:
            continue
        best = min(others, key=lambda r: r["ms"])
        for r in group:
            if not r["ours"]:
                continue
            speedup, target = best["ms"] / r["ms"], r.get("target")
            out.append(
                {
                    "case": name,
                    "library": r["library"],
                    "fastest_other": best["library"],
                    "speedup": speedup,
                    "target": target,
                    "met": None if target is None else speedup >= target,
                }
            )
    return out


def format_rows(rows: list[dict[str, Any]], header: bool = True) -> str:
    """The table of rows: case, library, median ms and ratio to pyrogen."""
    lines = [f"{'case':44s} {'library':>22s} {'ms':>10s} {'x pyrogen':>10s}"] if header else []
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:9.2f}x"
        lines.append(f"{r['case']:44s} {r['library']:>22s} {r['ms']:10.2f} {ratio:>10s}")
    return "\n".join(lines)


def format_summary(summary: list[dict[str, Any]]) -> str:
    """One line per case: the speed-up against the fastest other row and the target."""
    head = f"{'case':44s} {'ours':>18s} {'fastest other':>20s} {'speed-up':>9s} {'target':>7s}"
    lines = [head + " met"]
    for s in summary:
        target = "" if s["target"] is None else f"{s['target']:g}x"
        met = "" if s["met"] is None else ("yes" if s["met"] else "NO")
        lines.append(
            f"{s['case']:44s} {s['library']:>18s} {s['fastest_other']:>20s} "
            f"{s['speedup']:8.2f}x {target:>7s} {met}"
        )
    return "\n".join(lines)
