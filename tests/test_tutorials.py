"""Every tutorial's code runs, at a smaller size, and reaches what the page says."""

import math
import re
from pathlib import Path

import pytest
import torch

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"

# page: {line on the page: the same line at smoke size}
SMOKE = {
    "density_estimation": {
        "num_steps, batch_size = 1500, 256": "num_steps, batch_size = 150, 128",
    },
    "flow_guides": {"num_steps, num_draws = 3000, 2000": "num_steps, num_draws = 30, 200"},
    "vae": {
        "num_epochs, num_eval_samples, latent_dim = 100, 1000, 8": (
            "num_epochs, num_eval_samples, latent_dim = 1, 10, 8"
        ),
    },
    "energy_models": {
        "num_epochs, num_betas, num_ebm_steps = 50, 5000, 2000": (
            "num_epochs, num_betas, num_ebm_steps = 2, 200, 3"
        ),
        "num_steps=500": "num_steps=20",
        "num_dbm_epochs, num_dbm_steps = 20, 300": "num_dbm_epochs, num_dbm_steps = 1, 3",
    },
    "adversarial": {"num_steps, num_avb_epochs = 2000, 50": "num_steps, num_avb_epochs = 3, 1"},
}


def code(page: str) -> str:
    """The page's python code blocks, in order, with the smoke sizes substituted."""
    text = (TUTORIALS / f"{page}.rst").read_text()
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", text, flags=re.M)
    assert blocks, f"{page}.rst has no python code"
    source = "\n".join(re.sub(r"^ {4}", "", b, flags=re.M) for b in blocks)
    for line, smoke in SMOKE[page].items():
        assert line in source, f"{page}.rst no longer holds {line!r}: update SMOKE"
        source = source.replace(line, smoke)
    return source


def run(page: str) -> dict:
    namespace: dict = {"__name__": f"tutorial_{page}"}
    exec(compile(code(page), f"docs/tutorials/{page}.rst", "exec"), namespace)
    return namespace


def test_every_tutorial_in_the_toctree_has_a_smoke_run():
    index = (TUTORIALS / "index.rst").read_text()
    listed = re.findall(r"^   (\w+)$", index, flags=re.M)
    assert (
        sorted(listed)
        == sorted(SMOKE)
        == sorted(p.stem for p in TUTORIALS.glob("*.rst") if p.stem != "index")
    )


@pytest.mark.slow
def test_density_estimation():
    ns = run("density_estimation")
    for name, value in ns["test_log_likelihood"].items():
        assert value > -2.5, (name, value)  # a standard normal scores about -2.6
    assert ns["samples"].shape == (1000, 2) and ns["log_p"].shape == (1000,)


@pytest.mark.slow
def test_flow_guides(capsys):
    ns = run("flow_guides")
    assert set(ns["idata"]) == {"AutoNormal", "AutoFlow"}
    for data in ns["idata"].values():
        assert data.posterior["theta"].shape == (1, 200, 8)
        assert {"posterior", "log_likelihood", "observed_data"} <= set(data.groups())
    assert capsys.readouterr().out.count("k-hat") == 2


@pytest.mark.slow
def test_vae():
    ns = run("vae")
    assert set(ns["vaes"]) == set(ns["objectives"])
    ll = ns["ll"]
    assert ll.log_likelihood.shape == (360,) and bool(torch.isfinite(ll.log_likelihood).all())
    assert float(ll.log_likelihood.mean()) > -64 * math.log(2)  # beats uniform pixels


@pytest.mark.slow
def test_energy_models():
    ns = run("energy_models")
    with torch.no_grad():
        assert -64 * math.log(2) < float(ns["rbm"].log_prob(ns["x_test"]).mean()) < 0
    ais, exact = ns["ais"], float(ns["exact"])
    assert abs(float(ais.log_partition) - exact) < 5 * float(ais.stderr) + 0.5
    assert ns["samples"].shape == (500, 2) and math.isfinite(ns["log_z"])
    assert -64 * math.log(2) - 10 < float(ns["bound"]) < 0  # a lower bound on log p, in nats
    assert math.isfinite(float(ns["dbm_log_z"].stderr))


@pytest.mark.slow
def test_adversarial():
    ns = run("adversarial")
    assert ns["x"].shape == (2000, 2)
    assert 0 <= ns["modes"] <= 8 and 0 <= ns["high_quality"] <= 1
