"""Every case of the bad-input tables raises the expected error, naming the argument."""

from __future__ import annotations

import warnings

import pytest

from tests.bad_input.cases import ALL
from tests.bad_input.table import names_argument


def test_the_tables_are_large_and_ids_unique():
    ids = [case.id for case in ALL]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 500


@pytest.mark.parametrize("case", ALL, ids=[case.id for case in ALL])
def test_bad_input_gives_a_clear_error(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning is not an error: the call must raise
        with pytest.raises(case.error) as info:
            case.call()
    assert names_argument(str(info.value), case.fragment), (case.fragment, str(info.value))


@pytest.mark.parametrize(
    ("message", "fragment", "expected"),
    [
        ("x must have shape (*batch, 3)", "x", True),
        ("expected input of shape 4x4", "x", False),
        ("site 'x': its value is not finite", "'x'", True),
        ("num_samples must be an int", "num_samples", True),
        ("num_samples_total", "num_samples", False),
    ],
)
def test_names_argument_matches_whole_words(message, fragment, expected):
    assert names_argument(message, fragment) is expected
