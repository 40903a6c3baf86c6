"""Random draws made in float64, then cast to the default dtype, so that every ``--dtype``
checks the same case: float32 draws of their own are other numbers (another sample, with other
extremes), not the float64 ones rounded. In float64 the draws equal the plain ones."""

import pyro.distributions as dist
import torch


def randn(*shape: int) -> torch.Tensor:
    """``torch.randn(*shape)`` drawn in float64 and cast to the default dtype."""
    return torch.randn(*shape, dtype=torch.float64).to(torch.get_default_dtype())


class Normal(dist.Normal):
    """``N(loc, scale)`` whose standard normal noise is drawn in float64, then cast to the dtype
    of ``loc``."""

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=torch.float64, device=self.loc.device)
        return self.loc + eps.to(self.loc.dtype) * self.scale
