"""The README's code example runs and fits the data."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_flow_example_runs_and_learns():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    flow, data = namespace["flow"], namespace["data"]
    import pyro.distributions as dist

    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    with torch.no_grad():
        ll = dist.TransformedDistribution(base, [flow]).log_prob(data).mean()
    # A standard normal scores two moons at about -2.6 nats; the fitted flow must do better.
    assert ll > -1.5
