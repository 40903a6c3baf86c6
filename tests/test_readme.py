"""The README: size, its test command (what ``.ci/run`` executes), and its examples, which run
at smoke size and reach what they claim."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEST_COMMAND = 'pip install torch==2.13.0 && pip install ".[test]" && python -m pytest'

# (heading of the section, {line in the README: the same line at smoke size})
EXAMPLES = {
    "A flow as a likelihood": {
        "num_steps, num_points = 1000, 2000": "num_steps, num_points = 150, 500"
    },
    "A flow in a guide, checked with ArviZ": {
        "num_steps, num_draws = 2000, 1000": "num_steps, num_draws = 30, 200"
    },
    "A VAE with the IWAE bound": {
        "num_epochs, num_images = 20, 4000": "num_epochs, num_images = 1, 200",
        "num_samples=1000": "num_samples=20",
    },
}


def python_block(heading: str) -> str:
    """The python block of the README section titled ``heading``."""
    section = re.search(
        rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README.read_text(), re.M | re.S
    )
    assert section, f"README has no section {heading!r}"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S)
    assert len(blocks) == 1, f"section {heading!r} should hold one python block"
    return blocks[0]


def run_smoke(heading: str) -> dict:
    code = python_block(heading)
    for line, smoke in EXAMPLES[heading].items():
        assert line in code, f"{heading!r}: {line!r} is no longer in the README; update EXAMPLES"
        code = code.replace(line, smoke)
    namespace: dict = {"__name__": "readme"}
    exec(compile(code, f"README.md: {heading}", "exec"), namespace)
    return namespace


def test_readme_is_short_and_names_no_missing_file():
    text = README.read_text()
    assert len(text.encode()) <= 8 * 1024
    assert not re.search(r"issue \d|session \d", text, re.I)
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", text):
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_readme_test_command_is_what_ci_runs():
    text = README.read_text()
    block = re.search(r"<!-- test-command -->\n```bash\n(.*?)\n```\n<!-- /test-command -->", text)
    assert block and block.group(1) == TEST_COMMAND


def test_every_readme_python_block_is_run_by_a_test():
    blocks = re.findall(r"```python\n", README.read_text())
    assert len(blocks) == len(EXAMPLES)


@pytest.mark.slow
def test_flow_likelihood_example_learns_the_data():
    ns = run_smoke("A flow as a likelihood")
    import pyro.distributions as dist

    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    with torch.no_grad():
        fitted = dist.TransformedDistribution(base, [ns["flow"]]).log_prob(ns["data"]).mean()
        standard = base.log_prob(ns["data"]).mean()  # the flow starts as the identity
    assert fitted > standard + 0.5, (float(fitted), float(standard))


@pytest.mark.slow
def test_flow_guide_example_gives_inference_data_and_khat(capsys):
    ns = run_smoke("A flow in a guide, checked with ArviZ")
    posterior = ns["idata"].posterior
    assert posterior["theta"].shape == (1, 200, 8)
    assert bool((posterior["tau"] > 0).all())
    assert ns["psis"].num_samples == 200 and "k-hat" in capsys.readouterr().out


@pytest.mark.slow
def test_vae_example_scores_better_than_independent_pixels():
    ns = run_smoke("A VAE with the IWAE bound")
    ll = ns["ll"]
    assert ll.log_likelihood.shape == (500,)
    assert bool(torch.isfinite(ll.log_likelihood).all())
    # one epoch on 200 images already beats uniform pixels (784 log 2 = 543 nats)
    assert float(ll.log_likelihood.mean()) > -543
