"""State dicts saved by pyrogen 0.1 (before the transform core was rebuilt) still load, and the
loaded models compute what they computed then.

``data/legacy_0_1.pt`` holds, for each model, its ``state_dict`` after a perturbation of every
parameter, an input ``x`` (and a ``context``) and the outputs ``y`` (and ``ladj``) that the 0.1
code computed, all in float64.
"""

from pathlib import Path

import pytest
import torch

from pyrogen import flows
from pyrogen.distributions import MADENetwork
from pyrogen.nn import ConvNet
from pyrogen.transforms import ImageCoupling

SAVED = torch.load(Path(__file__).parent / "data" / "legacy_0_1.pt", weights_only=True)

MAKERS = {
    "maf": lambda: flows.maf(3, num_layers=2, hidden_dims=[8]),
    "iaf": lambda: flows.iaf(3, num_layers=2, hidden_dims=[8], mixing="lu"),
    "cond_maf": lambda: flows.maf(3, num_layers=2, hidden_dims=[8], context_dim=2),
    "cond_iaf": lambda: flows.iaf(3, num_layers=1, hidden_dims=[8], context_dim=2),
    "realnvp": lambda: flows.realnvp(4, num_layers=2, hidden_dims=[8]),
    "realnvp_additive": lambda: flows.realnvp(3, num_layers=2, hidden_dims=[8], additive=True),
    "cond_realnvp": lambda: flows.realnvp(4, num_layers=2, hidden_dims=[8], context_dim=2),
    "coupling_checkerboard": lambda: ImageCoupling(2, ConvNet(2, 4, 4)),
    "coupling_channel": lambda: ImageCoupling(3, ConvNet(2, 4, 2), mask="channel", parity=1),
    "glow": lambda: (
        flows.glow((1, 4, 4), num_steps=1, hidden_channels=4, pixel_levels=None).transform
    ),
    "made_network": lambda: MADENetwork(3, [8], num_masks=2),
    "made_network_cat": lambda: MADENetwork(3, [8], num_categories=3, context_dim=2),
}


def test_every_saved_model_is_covered():
    assert set(SAVED) == set(MAKERS)


@pytest.mark.parametrize("name", list(MAKERS))
def test_legacy_state_dict_loads_and_reproduces_outputs(name):
    saved = SAVED[name]
    torch.manual_seed(123)  # a different initialization: everything must come from the file
    module = MAKERS[name]().double()
    module.load_state_dict(saved["state_dict"])
    x, context = saved["x"], saved.get("context")
    if name.startswith("made_network"):
        y = module(x, context, mask_index=0) if context is not None else module(x, mask_index=1)
        torch.testing.assert_close(y, saved["y"], rtol=1e-12, atol=1e-12)
        return
    f = module.condition(context) if context is not None else module
    y = f(x)
    torch.testing.assert_close(y, saved["y"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f.log_abs_det_jacobian(x, y), saved["ladj"], rtol=1e-12, atol=1e-12)
    # and the reloaded state saves and loads again in the new layout
    again = MAKERS[name]().double()
    again.load_state_dict(module.state_dict())
    g = again.condition(context) if context is not None else again
    torch.testing.assert_close(g(x), y)
