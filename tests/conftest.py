"""Test options (--device, --dtype), seeding and markers for the pyrogen test suite."""

import pyro
import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for tests: cpu or cuda")
    parser.addoption("--dtype", default="float64", choices=["float32", "float64"])


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device").startswith("cuda") and torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs --device cuda and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device(request) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture
def dtype(request) -> torch.dtype:
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture
def rtol(request) -> float:
    """Relative tolerance for comparisons that are exact up to rounding in the test dtype."""
    return 1e-10 if request.config.getoption("--dtype") == "float64" else 2e-5


@pytest.fixture
def float64_only(request) -> None:
    """Skip a test whose check needs double precision (finite differences, 1e-10 zeros)."""
    if request.config.getoption("--dtype") != "float64":
        pytest.skip("needs --dtype float64")


@pytest.fixture(autouse=True)
def _seed_and_clear(request):
    dtype = getattr(torch, request.config.getoption("--dtype"))
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield
    torch.set_default_dtype(old)
