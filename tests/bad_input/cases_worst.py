"""The worst cases of the bad-input audit: silent wrong answers, infinite bounds accepted,
numerical traps. Each is also a named test in ``test_worst_cases.py``."""

from __future__ import annotations

import pyro
import torch

from pyrogen import analysis, datasets, flows
from pyrogen.distributions import DeepBoltzmannMachine, EnergyBasedDistribution, ImageFlow
from pyrogen.infer import (
    AVB,
    GAN,
    IWAE,
    ContrastiveDivergence,
    MeanFieldPCD,
    fit_rbm,
    log_likelihood,
)
from pyrogen.nn import MADE, ConvNet, DenseNN, PixelCNNNetwork
from pyrogen.transforms import ActNorm, AffineCoupling, ImageCoupling, MultiScale, Planar
from tests.bad_input import cases_infer as infer
from tests.bad_input.table import INF, NAN, Case


def imageflow_with_a_flow_of_another_shape():
    ImageFlow(
        flows.glow((1, 4, 4), num_levels=1, num_steps=1, hidden_channels=4).transform, (1, 8, 8)
    )


def multiscale_step_of_another_size():
    MultiScale(1, [ActNorm((4, 2, 2))])(torch.randn(2, 1, 6, 6))


class _Fixed(torch.nn.Module):
    """A conditioner that declares no channel counts and returns ``channels`` channels of size
    ``size`` (``None``: the input's)."""

    def __init__(self, channels: int, size=None) -> None:
        super().__init__()
        self.channels, self.size = channels, size

    def forward(self, x):
        return 0.1 * torch.ones(*x.shape[:-3], self.channels, *(self.size or x.shape[-2:]))


def image_coupling_conditioner_with_too_few_channels():
    # checkerboard on 2 channels: 2 parameters for each of the 2 channels = 4 needed
    ImageCoupling(2, _Fixed(2), mask="checkerboard")(torch.randn(3, 2, 4, 4))


def image_coupling_conditioner_output_broadcast():
    # the right channel count at 1x1: it would be broadcast over the 4x4 image
    ImageCoupling(2, _Fixed(2, (1, 1)), mask="channel")(torch.randn(3, 2, 4, 4))


def frechet_distance_of_a_negative_definite_covariance():
    analysis.gaussian_frechet_distance(torch.zeros(2), -torch.eye(2), torch.zeros(2), -torch.eye(2))


def psis_khat_of_one_draw():
    analysis.psis_khat(infer.model, infer.guide, infer.X(), num_samples=1)


def importance_resample_from_one_proposal():
    analysis.importance_resample(
        infer.model, infer.guide, infer.X(), num_samples=5, num_proposals=1
    )


def load_mnist5k_as_integers():
    datasets.load_mnist5k(dtype=torch.long)


def context_given_to_a_conditioner_without_one():
    AffineCoupling(1, DenseNN(1, [4], 2)).forward_and_ladj(torch.randn(3, 2), torch.randn(3, 1))


def context_given_to_a_made_without_one():
    MADE(3, [8])(torch.randn(3, 3), torch.randn(3, 2))


def iwae_loss_with_a_guide_missing_a_latent():
    IWAE(3).loss(infer.model_two_latents, infer.guide, infer.X())


def log_likelihood_with_a_guide_missing_a_latent():
    log_likelihood(infer.model_two_latents, infer.guide, infer.X(), num_samples=4)


def ebm_sampler_that_diverges():
    EnergyBasedDistribution(
        lambda x: (x**2).sum(-1) / 2, (2,), num_steps=500, step_size=10.0
    ).sample((4,))


def pixelcnn_with_zero_hidden_channels():
    PixelCNNNetwork(hidden_channels=0)


def affine_coupling_without_a_conditioner():
    AffineCoupling(1, None)


def made_with_a_string_mask_index():
    MADE(3, [8], num_masks=2)(torch.zeros(2, 3), mask_index="a")


def fit_rbm_on_no_data():
    fit_rbm(torch.zeros(0, 4), 2, epochs=1)


def gan_step_on_no_data():
    GAN(infer.generator, torch.nn.Linear(1, 1), pyro.optim.Adam({}), pyro.optim.Adam({})).step(
        torch.zeros(0, 1)
    )


def iwae_on_no_data():
    IWAE(3).loss(infer.model, infer.guide, torch.zeros(0))


def log_likelihood_on_no_data():
    log_likelihood(infer.model, infer.guide, torch.zeros(0), num_samples=4)


def contrastive_divergence_on_no_data():
    ContrastiveDivergence().loss(infer.rbm_model, infer.empty_guide, torch.zeros(0, 4))


def avb_on_no_data():
    AVB(torch.nn.Linear(2, 1), pyro.optim.Adam({})).loss(infer.model, infer.guide, torch.zeros(0))


def mean_field_pcd_on_no_data():
    def model(v):
        dbm = DeepBoltzmannMachine(
            [torch.zeros(4, 3), torch.zeros(3, 2)], [torch.zeros(n) for n in (4, 3, 2)]
        )
        with pyro.plate("data", len(v)):
            pyro.sample("v", dbm, obs=v)

    MeanFieldPCD().loss(model, infer.empty_guide, torch.zeros(0, 4))


def psis_khat_on_no_data():
    analysis.psis_khat(infer.model, infer.guide, torch.zeros(0), num_samples=20)


def to_inference_data_on_no_data():
    analysis.to_inference_data(infer.model, infer.guide, torch.zeros(0), num_samples=4)


def _subsampled_model(x):
    with pyro.plate("data", len(x), subsample_size=2) as idx:
        z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(()), 1.0))
        pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x[idx])


def _subsampled_guide(x):
    with pyro.plate("data", len(x), subsample_size=2) as idx:
        pyro.sample("z", pyro.distributions.Normal(x[idx] / 2, 0.5**0.5))


def log_likelihood_with_a_random_subsample():
    log_likelihood(_subsampled_model, _subsampled_guide, torch.arange(5.0), num_samples=4)


def to_inference_data_with_a_random_subsample():
    analysis.to_inference_data(
        _subsampled_model, _subsampled_guide, torch.arange(5.0), num_samples=4
    )


def planar_with_a_tolerance_below_the_dtype_resolution():
    f = Planar(2, inverse_tol=1e-30, max_inverse_iters=10**9)
    with torch.no_grad():  # a layer that is not the identity: the root find has work to do
        f.u.copy_(torch.tensor([0.8, -0.5]))
        f.w.copy_(torch.tensor([1.0, 0.5]))
    f.inv(torch.randn(3, 2))


def dense_nn_forward_of_integers():
    DenseNN(3, [8], 2)(torch.zeros(2, 3, dtype=torch.long))


def conv_net_forward_of_the_other_dtype():
    ConvNet(2, 4, 4)(
        torch.zeros(
            1,
            2,
            3,
            3,
            dtype=torch.float32 if torch.get_default_dtype() == torch.float64 else torch.float64,
        )
    )


WORST = [
    ("imageflow_with_a_flow_of_another_shape", ValueError, "transform"),
    ("multiscale_step_of_another_size", ValueError, "x"),
    ("image_coupling_conditioner_with_too_few_channels", ValueError, "conditioner"),
    ("image_coupling_conditioner_output_broadcast", ValueError, "conditioner"),
    ("frechet_distance_of_a_negative_definite_covariance", ValueError, "cov_a"),
    ("psis_khat_of_one_draw", ValueError, "num_samples"),
    ("importance_resample_from_one_proposal", ValueError, "num_proposals"),
    ("load_mnist5k_as_integers", TypeError, "dtype"),
    ("context_given_to_a_conditioner_without_one", ValueError, "context"),
    ("context_given_to_a_made_without_one", ValueError, "context"),
    ("iwae_loss_with_a_guide_missing_a_latent", ValueError, "guide"),
    ("log_likelihood_with_a_guide_missing_a_latent", ValueError, "guide"),
    ("ebm_sampler_that_diverges", FloatingPointError, "step_size"),
    ("pixelcnn_with_zero_hidden_channels", ValueError, "hidden_channels"),
    ("affine_coupling_without_a_conditioner", TypeError, "conditioner"),
    ("made_with_a_string_mask_index", TypeError, "mask_index"),
    ("fit_rbm_on_no_data", ValueError, "data"),
    ("gan_step_on_no_data", ValueError, "data"),
    ("iwae_on_no_data", ValueError, "data"),
    ("log_likelihood_on_no_data", ValueError, "data"),
    ("contrastive_divergence_on_no_data", ValueError, "data"),
    ("avb_on_no_data", ValueError, "data"),
    ("mean_field_pcd_on_no_data", ValueError, "data"),
    ("psis_khat_on_no_data", ValueError, "data"),
    ("to_inference_data_on_no_data", ValueError, "data"),
    ("log_likelihood_with_a_random_subsample", ValueError, "subsample_size"),
    ("to_inference_data_with_a_random_subsample", ValueError, "subsample_size"),
    ("planar_with_a_tolerance_below_the_dtype_resolution", ValueError, "inverse_tol"),
    ("dense_nn_forward_of_integers", TypeError, "x"),
    ("conv_net_forward_of_the_other_dtype", TypeError, "x"),
]
CASES = [Case(f"worst-{name}", globals()[name], error, fragment) for name, error, fragment in WORST]
_ = (INF, NAN)
