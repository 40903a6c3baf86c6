"""The AutoFlow readout-variants script: its variants are what its docstring says (the learned
gain starts at the default's 1 / sqrt(H) readout exactly, the floored bound keeps the soft
bound's value and adds ``delta`` to its slope), and every variant fits a few steps."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.infer import AutoFlow
from pyrogen.infer.autoguide import _scale_readouts
from pyrogen.transforms import Affine
from tests.scripts import ROOT, load


@pytest.fixture(scope="module")
def bench():
    return load(ROOT / "benchmarks" / "autoflow_readout_variants.py")


def _perturbed(flow):
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    return flow


def test_the_script_builds_autoflows_default_flow(bench):
    model = lambda: pyro.sample("z", dist.Normal(torch.zeros(5), 1.0).to_event(1))  # noqa: E731
    built = AutoFlow(model, output_scale="none")._build_flow(5)
    assert repr(bench.default_iaf(5)) == repr(built)


def test_gain_at_zero_is_the_default_readout(bench):
    torch.manual_seed(0)
    gained = _perturbed(bench.gain_flow(10.0, per_dim=False)(5))
    default = _scale_readouts(bench.default_iaf(5), 0.5)
    state = {k: v for k, v in gained.state_dict().items() if "readout_log_gain" not in k}
    default.load_state_dict(state)
    with torch.no_grad():
        for layer in gained:
            if hasattr(layer, "readout_log_gain"):
                layer.readout_log_gain.zero_()
    x = torch.randn(7, 5)
    torch.testing.assert_close(gained(x), default(x), rtol=0, atol=0)
    # a nonzero log-gain changes the map
    with torch.no_grad():
        gained[0].readout_log_gain.fill_(0.05)
    assert not torch.allclose(gained(x), default(x))


def test_floored_bound_keeps_the_value_and_adds_delta_to_the_slope(bench):
    raw = torch.tensor([-8.0, -1.0, 0.0, 0.5, 9.0], dtype=torch.float64, requires_grad=True)
    params = torch.stack([torch.zeros_like(raw), raw], -1)
    x = torch.ones(5, dtype=torch.float64)
    y, log_det = bench.FloorAffine(0.1).forward(x, params)
    y_ref, log_det_ref = Affine(2.0).forward(x, params.detach())
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(log_det, log_det_ref)
    (grad,) = torch.autograd.grad(log_det.sum(), raw)
    expected = 1 - torch.tanh(raw.detach() / 2.0) ** 2 + 0.1
    torch.testing.assert_close(grad, expected)


def test_every_variant_runs(bench, capsys):
    threads = torch.get_num_threads()
    variants = ["sqrt", "none", "gain-a10", "gain-dim-a1", "floor0.1", "plain-gradient"]
    try:
        bench.main(["logreg", "--variants", *variants, "--seeds", "0", "--steps", "3"])
    finally:
        torch.set_num_threads(threads)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " seed 0 " in ln]
    assert [ln.split()[0] for ln in lines] == variants
    with pytest.raises(ValueError, match="unknown variant 'gain'"):
        bench.make_guide("gain", None)
