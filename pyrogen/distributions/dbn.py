"""Deep belief nets: a stack of RBMs trained greedily, sampled top-down."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.util import check_count

__all__ = ["DeepBeliefNet"]


class DeepBeliefNet:
    r"""A deep belief net (Hinton, Osindero, Teh 2006) from a stack of Bernoulli RBMs.

    What it computes: layer ``l`` is an RBM between units :math:`h^{(l)}` (below, with
    :math:`h^{(0)} = v`) and :math:`h^{(l+1)}` (above). The generative model is the top RBM,
    an undirected associative memory over the two highest layers, followed by the directed
    sigmoid belief layers :math:`p(h^{(l)} \mid h^{(l+1)}) = \prod_i \sigma(b^{(l)}_i +
    (W^{(l)} h^{(l+1)})_i)` down to the pixels. :meth:`sample` runs ``num_gibbs_steps`` of
    block Gibbs in the top RBM, then one top-down pass. Greedy layer-wise training: fit the
    first RBM to the data, propagate the data up with :meth:`propagate_up` (mean activations
    :math:`p(h = 1 \mid v)`, or binary samples), fit the next RBM to those, and so on
    (``pyrogen.infer.fit_rbm`` trains each layer). The likelihood of a DBN is intractable
    (it needs a sum over all hidden layers); use the bottom RBM's, or AIS bounds, to score one.

    Shapes:
        ``layers[l].weight``: ``(n_l, n_{l+1})``; samples: ``(*sample_shape, n_0)``.
    Args:
        layers: the RBMs, bottom first; layer ``l``'s hidden size equals layer ``l+1``'s
            visible size.
    Raises:
        ValueError: an empty stack, a non-``BernoulliRBM`` layer or sizes that do not chain.
    References:
        Hinton, Osindero, Teh (2006). A Fast Learning Algorithm for Deep Belief Nets.
        https://doi.org/10.1162/neco.2006.18.7.1527
    Example:
        >>> rbms = [BernoulliRBM(torch.randn(6, 4), torch.zeros(6), torch.zeros(4)),
        ...         BernoulliRBM(torch.randn(4, 3), torch.zeros(4), torch.zeros(3))]
        >>> DeepBeliefNet(rbms).sample((5,)).shape
        torch.Size([5, 6])
    """

    def __init__(self, layers: Sequence[BernoulliRBM]) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("layers must contain at least one BernoulliRBM")
        for i, layer in enumerate(layers):
            if not isinstance(layer, BernoulliRBM) or layer.batch_shape != ():
                raise ValueError(f"layers[{i}] must be a BernoulliRBM with batch_shape ()")
            if i and layer.n_visible != layers[i - 1].n_hidden:
                raise ValueError(
                    f"layers[{i}] has {layer.n_visible} visible units but layers[{i - 1}] has "
                    f"{layers[i - 1].n_hidden} hidden units"
                )
        self.layers = layers

    def propagate_up(self, v: torch.Tensor, *, sample: bool = False) -> list[torch.Tensor]:
        """Activations of every layer for data ``v``: ``[v, h1, h2, ...]`` (mean activations
        :math:`p(h = 1 \\mid \\text{below})`, or binary draws with ``sample=True``); integer,
        boolean or other-precision ``v`` is converted to the parameters' dtype."""
        out = [v.to(self.layers[0].weight.dtype)]
        with torch.no_grad():
            for layer in self.layers:
                probs = layer.hidden_given_visible(out[-1]).base_dist.probs
                out.append(torch.bernoulli(probs) if sample else probs)
        return out

    def sample(self, sample_shape=(), *, num_gibbs_steps: int = 1000) -> torch.Tensor:
        """Draw visible vectors: Gibbs in the top RBM, then one top-down pass.

        Returns the bottom layer's mean activations :math:`p(v = 1 \\mid h^{(1)})` (the usual
        way to show DBN samples; draw ``torch.bernoulli`` of them for binary samples).

        Shapes:
            returns ``sample_shape + (n_0,)``.
        """
        check_count(num_gibbs_steps, "num_gibbs_steps")
        top = self.layers[-1]
        with torch.no_grad():
            start = torch.bernoulli(
                top.visible_bias.new_full(torch.Size(sample_shape) + top.event_shape, 0.5)
            )
            h = top.markov_chain(start, num_gibbs_steps)
            for layer in reversed(self.layers[:-1]):
                probs = layer.visible_given_hidden(h).base_dist.probs
                h = torch.bernoulli(probs)
            return (
                probs
                if len(self.layers) > 1
                else top.visible_given_hidden(top.hidden_given_visible(h).sample()).base_dist.probs
            )
