#!/usr/bin/env bash
# Mutation testing (mutmut >= 3) of pyrogen's core math modules against their fast tests.
# Not run in CI: one module takes minutes to hours on two cores.
#
#   scripts/mutation.sh                 # every module in the table below
#   scripts/mutation.sh metrics iwae    # some of them
#
# Each module runs in its own scratch copy of the tracked tree ($MUTATION_DIR/<name>, default
# /tmp/pyrogen-mutation) with a [tool.mutmut] section appended to that copy's pyproject.toml:
# only that module is mutated, only its test files are collected. mutmut 3 maps every test to
# the functions it calls and runs, per mutant, only the covering tests with `-x -q`, one mutant
# at a time (--max-children 1). The survivors and the killed/total counts are written to
# $MUTATION_DIR/<name>/summary.txt; `cd $MUTATION_DIR/<name> && mutmut show <mutant>` prints
# a mutant's diff.
#
#   MUTATION_RERUN=1 scripts/mutation.sh rbm
#
# reruns only the previous run's survivors and "no tests" mutants of a module, in the same
# scratch copy, after refreshing that copy (tests and every unmutated file) from the current
# tree: the earlier verdicts of killed mutants are kept (adding tests cannot revive them). It
# refuses when the mutated module itself changed since that run (the mutants would differ);
# then run it again without MUTATION_RERUN.
set -euo pipefail

declare -A MODULE=(
  [metrics]="pyrogen/analysis/metrics.py"
  [posterior]="pyrogen/analysis/posterior.py"
  [iwae]="pyrogen/infer/iwae.py"
  [elbo]="pyrogen/infer/elbo.py"
  [rbm]="pyrogen/distributions/rbm.py"
  [transforms]="pyrogen/transforms/*"
)
# pytest arguments selecting each module's tests. For iwae, the two slowest statistical tests
# (a 400-repetition Monte Carlo ordering in K and an AutoFlow training run, 20 of the files'
# 35 s) are deselected: each surviving mutant runs every covering test, and with them a run took
# hours on two shared cores; the exact-bound, gradient and enumeration tests stay.
declare -A TESTS=(
  [metrics]="tests/analysis/test_metrics.py"
  [posterior]="tests/analysis/test_posterior.py"
  [iwae]="tests/infer/test_iwae.py tests/infer/test_importance.py
    --deselect tests/infer/test_iwae.py::test_bound_increases_with_K_and_stays_below_log_evidence
    --deselect tests/infer/test_iwae.py::test_trains_autoflow_guide_with_svi"
  [elbo]="tests/infer/test_elbo.py tests/infer/test_elbo_terms.py tests/infer/test_nonfinite.py
    tests/infer/test_resume.py"
  [rbm]="tests/distributions/test_energy_models.py tests/infer/test_contrastive.py"
  [transforms]="tests/transforms tests/distributions/test_image_flow.py tests/bad_input"
)
ORDER=(metrics iwae rbm posterior elbo transforms)  # smallest first

# Everything runs inside main(), parsed before it starts: the script may be edited while a run
# is going on.
main() {
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
root=$(cd "$(dirname "$0")/.." && pwd)
work=${MUTATION_DIR:-/tmp/pyrogen-mutation}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")

toml_list() {  # words -> a TOML list of strings
  local out="" w
  for w in "$@"; do out+="\"$w\", "; done
  echo "[${out%, }]"
}

for name in "${names[@]}"; do
  [ -n "${MODULE[$name]:-}" ] || { echo "unknown module $name (one of ${ORDER[*]})" >&2; exit 2; }
  dir=$work/$name
  rerun=()
  if [ -n "${MUTATION_RERUN:-}" ]; then
    [ -f "$dir/summary.txt" ] && [ -d "$dir/mutants" ] || { echo "no previous run in $dir" >&2; exit 2; }
    for f in $(cd "$root" && echo ${MODULE[$name]}); do
      cmp -s "$root/$f" "$dir/$f" || { echo "$f changed since the run in $dir: run without MUTATION_RERUN" >&2; exit 2; }
    done
    mapfile -t rerun < <(grep -o '^[^:]*__mutmut_[0-9]*' "$dir/summary.txt")
    echo "== $name: rerunning the ${#rerun[@]} survivors of the previous run in $dir"
    (cd "$root" && git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$dir")
    # the unmutated sources that the mutants/ copy imports (the mutated module stays as it is)
    # shellcheck disable=SC2086
    (cd "$root" && git ls-files -co --exclude-standard pyrogen | grep -vxF "$(printf '%s\n' ${MODULE[$name]})" \
      | tar -cf - -T - | tar -xf - -C "$dir/mutants")
  else
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$root" && git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$dir")
  fi
  # shellcheck disable=SC2086
  cat >>"$dir/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["pyrogen"]
only_mutate = $(toml_list ${MODULE[$name]})
pytest_add_cli_args_test_selection = $(toml_list ${TESTS[$name]})
# no doctests of the copied package (they would run the trampolined module twice)
pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts=-ra --strict-markers"]
TOML
  echo "== $name: ${MODULE[$name]} against ${TESTS[$name]}"
  (cd "$dir" && mutmut run --max-children 1 "${rerun[@]}" >>run.log 2>&1 || true)
  (cd "$dir" && mutmut results --all true >results.txt 2>&1 || true)
  python3 - "$dir" "$name" <<'PY'
import collections, pathlib, re, sys
d, name = pathlib.Path(sys.argv[1]), sys.argv[2]
status = collections.Counter()
survivors = []
for line in (d / "results.txt").read_text().splitlines():
    m = re.match(r"\s*(\S+__mutmut_\d+): (.+)$", line)
    if m:
        status[m[2]] += 1
        if m[2] in ("survived", "no tests"):
            survivors.append(f"{m[1]}: {m[2]}")
total = sum(status.values())
killed = status["killed"] + status["timeout"]
text = f"{name}: killed {killed}/{total} ({100 * killed / max(total, 1):.1f}%) {dict(status)}\n"
(d / "summary.txt").write_text(text + "".join(s + "\n" for s in survivors))
print(text, end="")
PY
done
}

main "$@"
exit
