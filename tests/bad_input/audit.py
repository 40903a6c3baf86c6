"""Run every bad-input case and classify it: ``clear`` (the expected error type with the
argument named in its message), ``unclear`` (another exception, or the message does not name
the argument), ``silent`` (no exception) or ``hang`` (longer than the per-case timeout).

Usage: ``python -m tests.bad_input.audit [--timeout SECONDS] [--verbose] [--json PATH]``
(run from the repository root; one thread is enough).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import warnings
from collections import Counter

import pyro
import torch

from tests.bad_input.table import Case, names_argument


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout


def classify(case: Case, timeout: float = 20.0) -> tuple[str, str]:
    """``(verdict, detail)`` of one case, run under the test suite's settings (float64 default,
    seed 0, a cleared param store, Pyro validation on)."""
    torch.set_default_dtype(torch.float64)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = case.call()
    except _Timeout:
        return "hang", f"no answer within {timeout:g} s"
    except Exception as e:
        message = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        if isinstance(e, case.error) and names_argument(str(e), case.fragment):
            return "clear", message
        return "unclear", message
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return "silent", f"returned {type(result).__name__}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--verbose", action="store_true", help="list every non-clear case")
    parser.add_argument("--json", help="write the verdicts to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pyro.enable_validation(True)
    from tests.bad_input.cases import AREAS

    verdicts, counts, start = {}, {}, time.perf_counter()
    for area, cases in AREAS.items():
        counts[area] = Counter()
        for case in cases:
            verdict, detail = classify(case, args.timeout)
            counts[area][verdict] += 1
            verdicts[case.id] = (verdict, detail)
            if verdict != "clear" and args.verbose:
                print(f"{verdict:8s} {case.id}: {detail}")
    kinds = ("clear", "unclear", "silent", "hang")
    total = Counter()
    print(f"\n{'area':14s}" + "".join(f"{k:>9s}" for k in kinds) + f"{'N':>6s}")
    for area, c in counts.items():
        total.update(c)
        print(f"{area:14s}" + "".join(f"{c[k]:9d}" for k in kinds) + f"{sum(c.values()):6d}")
    n = sum(total.values())
    print(f"{'all':14s}" + "".join(f"{total[k]:9d}" for k in kinds) + f"{n:6d}")
    print(
        f"clear: {100 * total['clear'] / n:.1f}% of {n} cases ({time.perf_counter() - start:.0f} s)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counts": dict(total), "verdicts": verdicts}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
