"""The worst cases of the bad-input audit, each a named test: silent wrong answers become
errors, and numerical traps are either fixed (the right answer) or refused."""

from __future__ import annotations

import pytest
import torch

from pyrogen import flows
from pyrogen.distributions import ImageFlow
from pyrogen.nn import ConvNet
from pyrogen.transforms import ActNorm, ImageCoupling, MultiScale, Planar
from tests.bad_input import cases_worst
from tests.bad_input.table import names_argument, other_dtype

WORST = {name: (error, fragment) for name, error, fragment in cases_worst.WORST}


def _raises(name):
    error, fragment = WORST[name]
    with pytest.raises(error) as info:
        getattr(cases_worst, name)()
    assert names_argument(str(info.value), fragment), str(info.value)
    return str(info.value)


def test_imageflow_rejects_a_flow_of_another_shape():
    message = _raises("imageflow_with_a_flow_of_another_shape")
    assert "(1, 8, 8)" in message
    # the right-shaped flow is accepted and scores 8x8 images
    flow = flows.glow((1, 8, 8), num_levels=1, num_steps=1, hidden_channels=4)
    k = torch.randint(0, 256, (2, 1, 8, 8)).to(torch.get_default_dtype())
    assert torch.isfinite(ImageFlow(flow.transform, (1, 8, 8)).log_prob(k)).all()


def test_multiscale_checks_the_size_of_its_inner_steps():
    message = _raises("multiscale_step_of_another_size")
    assert "steps[0]" in message and "(4, 3, 3)" in message


def test_multiscale_log_det_matches_autograd_when_the_step_fits():
    level = MultiScale(1, [ActNorm((4, 3, 3))])
    with torch.no_grad():
        level.steps[0].log_scale.copy_(torch.tensor([0.1, -0.2, 0.3, 0.05]).reshape(4, 1, 1))
        level.steps[0].initialized.fill_(True)
    x = torch.randn(1, 6, 6)
    jac = torch.autograd.functional.jacobian(
        lambda v: level(v.reshape(1, 6, 6)).reshape(-1), x.reshape(-1)
    )
    ladj = level.log_abs_det_jacobian(x, level(x))
    torch.testing.assert_close(ladj, torch.linalg.slogdet(jac)[1])


def test_image_coupling_conditioner_with_too_few_channels():
    _raises("image_coupling_conditioner_with_too_few_channels")


def test_image_coupling_conditioner_output_is_not_broadcast():
    _raises("image_coupling_conditioner_output_broadcast")


def test_image_coupling_log_det_matches_autograd_with_a_fitting_conditioner():
    f = ImageCoupling(2, cases_worst._Fixed(2), mask="channel")
    x = torch.randn(2, 3, 3)
    jac = torch.autograd.functional.jacobian(
        lambda v: f(v.reshape(2, 3, 3)).reshape(-1), x.reshape(-1)
    )
    torch.testing.assert_close(f.log_abs_det_jacobian(x, f(x)), torch.linalg.slogdet(jac)[1])


def test_frechet_distance_rejects_a_negative_definite_covariance():
    assert "positive semi-definite" in _raises("frechet_distance_of_a_negative_definite_covariance")


def test_psis_khat_needs_more_than_one_draw():
    _raises("psis_khat_of_one_draw")


def test_importance_resample_needs_more_than_one_proposal():
    _raises("importance_resample_from_one_proposal")


def test_load_mnist5k_refuses_an_integer_dtype_before_loading():
    _raises("load_mnist5k_as_integers")


@pytest.mark.parametrize(
    "name", ["context_given_to_a_conditioner_without_one", "context_given_to_a_made_without_one"]
)
def test_a_context_given_to_a_network_without_one_is_refused(name):
    _raises(name)


def test_pixelcnn_network_refuses_an_unexpected_context():
    from pyrogen.nn import PixelCNNNetwork

    net = PixelCNNNetwork(hidden_channels=4, num_layers=1)
    with pytest.raises(ValueError, match="takes no context"):
        net(torch.zeros(2, 1, 5, 5), torch.zeros(2, 3))


@pytest.mark.parametrize(
    "name",
    ["iwae_loss_with_a_guide_missing_a_latent", "log_likelihood_with_a_guide_missing_a_latent"],
)
def test_a_guide_that_omits_a_latent_is_refused(name):
    assert "'s'" in _raises(name)


@pytest.mark.parametrize(
    "name", ["log_scale_bound", "init_scale", "temperature", "energy_penalty", "noise"]
)
@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, "1", True])
def test_finite_numbers_are_required(name, value):
    from pyrogen import datasets
    from pyrogen.distributions import BoltzmannMachine
    from pyrogen.infer import ContrastiveDivergence
    from pyrogen.transforms import Affine

    build = {
        "log_scale_bound": lambda v: Affine(v),
        "init_scale": lambda v: cases_worst.EnergyBasedDistribution(
            lambda x: x.sum(-1), (2,), init_scale=v
        ),
        "temperature": lambda v: BoltzmannMachine(torch.zeros(2, 2), torch.zeros(2), temperature=v),
        "energy_penalty": lambda v: ContrastiveDivergence(energy_penalty=v),
        "noise": lambda v: datasets.two_moons(4, noise=v),
    }[name]
    error = TypeError if isinstance(value, (str, bool)) else ValueError
    with pytest.raises(error, match=name):
        build(value)


@pytest.mark.parametrize("bound", [0.0, -2.0, float("inf")])
def test_log_scale_bound_zero_negative_or_inf_is_refused_before_soft_bound(bound):
    with pytest.raises(ValueError, match="log_scale_bound"):
        flows.realnvp(3, log_scale_bound=bound)


def test_planar_inverse_is_finite_where_w_dot_u_rounds_to_minus_one_in_float32():
    f = Planar(2).float()
    with torch.no_grad():
        f.w.copy_(torch.tensor([1.0, 0.0]))
        f.u.copy_(torch.tensor([-30.0, 0.0]))  # softplus(-30 + log(e - 1)) rounds to 0
    y = f(0.01 * torch.randn(5, 2, dtype=torch.float32))
    x = f.inv(y.clone())
    assert torch.isfinite(x).all()
    torch.testing.assert_close(f(x), y, atol=1e-5, rtol=0)  # f(f^-1(y)) = y
    assert torch.isfinite(f.log_abs_det_jacobian(x, y)).all()


def test_planar_refuses_a_tolerance_below_the_dtype_resolution():
    with pytest.raises(ValueError, match="inverse_tol"):
        Planar(2, inverse_tol=1e-300)
    f = Planar(2, inverse_tol=1e-10).float()  # fine in float64, below float32's eps
    with pytest.raises(ValueError, match="inverse_tol"):
        f.inv(torch.randn(3, 2, dtype=torch.float32))
    _raises("planar_with_a_tolerance_below_the_dtype_resolution")


def test_energy_based_sampler_raises_when_it_diverges():
    _raises("ebm_sampler_that_diverges")


def test_log_partition_nan_is_refused():
    with pytest.raises(ValueError, match="log_partition"):
        cases_worst.EnergyBasedDistribution(lambda x: x.sum(-1), (2,), log_partition=float("nan"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.zeros(2, 3, dtype=torch.long),
        lambda: torch.zeros(2, 4),
        lambda: torch.zeros(2, 3, dtype=other_dtype()),
    ],
)
def test_network_forward_names_the_input(make):
    from pyrogen.nn import MADE, DenseNN

    x = make()
    if x.dtype == torch.get_default_dtype():
        error = ValueError
    else:
        error = TypeError
    for net in (DenseNN(3, [4], 2), MADE(3, [4])):
        with pytest.raises(error, match="x "):
            net(x)


def test_conv_net_forward_names_the_input():
    _raises("conv_net_forward_of_the_other_dtype")
    with pytest.raises(ValueError, match="x must have shape"):
        ConvNet(2, 4, 4)(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize(
    "name",
    [
        "pixelcnn_with_zero_hidden_channels",
        "affine_coupling_without_a_conditioner",
        "made_with_a_string_mask_index",
        "dense_nn_forward_of_integers",
    ],
)
def test_messages_name_the_argument_at_fault(name):
    _raises(name)


@pytest.mark.parametrize(
    "name",
    [
        "fit_rbm_on_no_data",
        "gan_step_on_no_data",
        "iwae_on_no_data",
        "log_likelihood_on_no_data",
        "contrastive_divergence_on_no_data",
        "avb_on_no_data",
        "mean_field_pcd_on_no_data",
        "psis_khat_on_no_data",
        "to_inference_data_on_no_data",
    ],
)
def test_empty_data_is_a_value_error(name):
    assert "empty" in _raises(name)
