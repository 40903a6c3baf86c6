"""Random draws made in float64, then cast to the default dtype, so that every ``--dtype``
checks the same case: float32 draws of their own are other numbers (another sample, with other
extremes), not the float64 ones rounded. In float64 the draws equal the plain ones."""

import contextlib

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


@contextlib.contextmanager
def in_float64():
    """Run the block with float64 as the default dtype and restore the previous one after it:
    modules built and tensors drawn inside are the float64 case, to be cast to the test's
    dtype afterwards (``.to(torch.get_default_dtype())``)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
