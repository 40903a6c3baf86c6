"""Root conftest: names available to the doctests in ``pyrogen/``."""

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_setup(doctest_namespace):
    torch.manual_seed(0)
    pyro.clear_param_store()
    doctest_namespace["torch"] = torch
    doctest_namespace["pyro"] = pyro
