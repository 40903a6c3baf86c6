"""Data-parallel training on torch.distributed: gloo, 2 CPU processes started by the tests.

Each spawn runs several scenarios in the same two workers (the process group survives the
synchronized failures) and writes what the workers saw to files that the tests compare with a
single-process run in this process. Every spawn has a hard timeout, so a hang fails the test.
"""

import copy
import socket
import time
from datetime import timedelta

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam, ClippedAdam
from torch import nn

from pyrogen import flows
from pyrogen.distributions import BernoulliRBM
from pyrogen.infer import (
    AVB,
    GAN,
    IWAE,
    AnnealedELBO,
    ContrastiveDivergence,
    DistributedOptim,
    DistributedSVI,
    FreeBitsELBO,
    LinearWarmup,
    all_reduce_gradients,
    broadcast_parameters,
    is_main_process,
    load_checkpoint,
    save_checkpoint,
    synchronize_errors,
)
from tests.same_draws import in_float64

WORLD, N, X_DIM, Z_DIM, BATCH, K, STEPS = 2, 32, 4, 2, 8, 3, 20
LOSSES = {
    # name: (factory, particles); FreeBitsELBO floors a per-worker batch statistic
    "Trace_ELBO": (lambda: Trace_ELBO(), 1),
    "AnnealedELBO": (lambda: AnnealedELBO(LinearWarmup(10)), 1),
    "FreeBitsELBO": (lambda: FreeBitsELBO(0.5), 1),
    "IWAE": (lambda: IWAE(K, "iwae", max_plate_nesting=1), K),
}
HARD_TIMEOUT = 120.0


# -- problems: every draw of the guide's noise is part of the data, so gradients are exact ----


def problem():
    """Drawn in float64, then cast to the default dtype: every dtype trains on the same data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, X_DIM, generator=g, dtype=torch.float64)
    eps = torch.randn(N, K, Z_DIM, generator=g, dtype=torch.float64)
    dtype = torch.get_default_dtype()
    return x.to(dtype), eps.to(dtype)


def huge() -> float:
    """A finite input whose square overflows the default dtype: an infinite loss."""
    return 1e200 if torch.get_default_dtype() == torch.float64 else 1e30


def global_batch(step: int) -> torch.Tensor:
    """The indices of step ``step``'s total batch (the same on every worker)."""
    return torch.randperm(N, generator=torch.Generator().manual_seed(step))[:BATCH]


def shard(step: int, rank: int) -> torch.Tensor:
    return global_batch(step).reshape(WORLD, -1)[rank]


class VAE(nn.Module):
    """Linear-Gaussian decoder; amortized guide: an encoder's Gaussian followed by a RealNVP flow,
    its noise given (``Delta`` with the flow's log-density), so the ELBO is deterministic."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        # initialized in float64, then cast: every dtype starts from the same values
        with in_float64():
            torch.manual_seed(seed)
            self.encoder = nn.Linear(X_DIM, 2 * Z_DIM)
            self.decoder = nn.Linear(Z_DIM, X_DIM)
            self.flow = flows.realnvp(Z_DIM, num_layers=2, hidden_dims=[8])
            with torch.no_grad():
                for p in self.parameters():  # away from the flow's identity initialization
                    p.add_(0.3 * torch.randn_like(p))
        self.to(torch.get_default_dtype())

    def model(self, x, eps, idx, particles):
        pyro.module("vae", self)
        scale = pyro.param("obs_scale", torch.ones(X_DIM), constraint=dist.constraints.positive)
        with pyro.plate("data", N, subsample=idx):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), scale).to_event(1), obs=x)

    def guide(self, x, eps, idx, particles):
        pyro.module("vae", self)
        loc, raw = self.encoder(x).chunk(2, -1)
        sd = F.softplus(raw) + 0.1
        e = eps[:, :particles].transpose(0, 1) if particles > 1 else eps[:, 0]
        u = loc + sd * e
        z = self.flow(u)
        log_q = dist.Normal(loc, sd).log_prob(u).sum(-1) - self.flow.log_abs_det_jacobian(u, z)
        with pyro.plate("data", N, subsample=idx):
            pyro.sample("z", dist.Delta(z, log_density=log_q, event_dim=1))


def vae_args(idx, particles):
    x, eps = problem()
    return x[idx], eps[idx], idx, particles


def params() -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in pyro.get_param_store().named_parameters()}


def set_params(values: dict[str, torch.Tensor]) -> None:
    store = dict(pyro.get_param_store().named_parameters())
    with torch.no_grad():
        for n, v in values.items():
            store[n].copy_(v)


def gradients(loss, vae, args, *, reduce: bool) -> dict[str, torch.Tensor]:
    with poutine.trace(param_only=True) as capture:
        loss.loss_and_grads(vae.model, vae.guide, *args)
    ps = {s["name"]: s["value"].unconstrained() for s in capture.trace.nodes.values()}
    if reduce:
        all_reduce_gradients(ps.values())
    out = {n: p.grad.clone() for n, p in ps.items()}
    for p in ps.values():
        p.grad = None
    return out


def rng() -> torch.Tensor:
    return torch.get_rng_state()


def rbm_model(v, idx):
    w = pyro.param("weight", 0.1 * torch.randn(6, 3))
    b, c = pyro.param("visible_bias", torch.zeros(6)), pyro.param("hidden_bias", torch.zeros(3))
    with pyro.plate("data", N, subsample=idx):
        pyro.sample("v", BernoulliRBM(w, b, c), obs=v)


def rbm_data():
    return torch.bernoulli(torch.full((N, 6), 0.3), generator=torch.Generator().manual_seed(3))


# -- the workers -------------------------------------------------------------------------------


def _init(rank: int, port: int, dtype: torch.dtype) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(dtype)  # the test's --dtype
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=30),
    )


def _run(rank: int, worker, port: int, out: str, dtype: torch.dtype) -> None:
    _init(rank, port, dtype)
    try:
        result = worker(rank, out)
    finally:
        torch.distributed.destroy_process_group()
    torch.save(result, f"{out}/rank{rank}.pt")


def spawn(worker, tmp_path, dtype: torch.dtype) -> list[dict]:
    """Run ``worker(rank, out)`` on 2 gloo workers with default dtype ``dtype``; return each
    rank's result (hard timeout).

    The workers are forked (as DataLoader workers are, one thread each) so that they inherit
    this process's imports; torch.optim imports torch._dynamo on its first use, which costs
    seconds, so that happens here once, before forking.
    """
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(
        _run,
        args=(worker, port, str(tmp_path), dtype),
        nprocs=WORLD,
        join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + HARD_TIMEOUT
    while not ctx.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the workers did not finish within {HARD_TIMEOUT} s (a hang)")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _vae_run(rank: int, name: str) -> dict:
    make_loss, particles = LOSSES[name]
    pyro.clear_param_store()
    vae = VAE(seed=rank)  # different initial values on each worker: the broadcast unifies them
    svi = DistributedSVI(vae.model, vae.guide, Adam({"lr": 0.05}), make_loss())
    svi.evaluate_loss(*vae_args(shard(0, rank), particles))
    broadcast_parameters()
    init = params()
    grad = gradients(make_loss(), vae, vae_args(shard(0, rank), particles), reduce=True)
    losses = [svi.step(*vae_args(shard(t, rank), particles)) for t in range(STEPS)]
    return {"init": init, "grad": grad, "final": params(), "losses": losses}


def _gan_run(rank: int) -> dict:
    pyro.clear_param_store()
    torch.manual_seed(rank)
    g, d = nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def generator(num):
        pyro.module("generator", g)
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return g(z)

    gan = GAN(generator, d, DistributedOptim(Adam({"lr": 0.01})), DistributedOptim(Adam({})))
    broadcast_parameters([g, d])
    pyro.set_rng_seed(10 + rank)  # each worker draws its own noise
    data = torch.randn(WORLD * 8, 2, generator=torch.Generator().manual_seed(5)) + 2.0
    for _ in range(5):
        with synchronize_errors():
            gan.step(data.reshape(WORLD, 8, 2)[rank])
    return {n: t.detach().clone() for n, t in [*g.named_parameters(), *d.named_parameters()]}


def _avb_run(rank: int) -> dict:
    pyro.clear_param_store()
    torch.manual_seed(rank)
    dec, enc = nn.Linear(2, X_DIM), nn.Linear(X_DIM + 2, 2)
    disc = nn.Sequential(nn.Linear(2 + X_DIM, 8), nn.Tanh(), nn.Linear(8, 1))

    class Disc(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = disc

        def forward(self, z, x, idx):
            return self.net(torch.cat([z, x], -1))

    def model(x, idx):
        pyro.module("dec", dec)
        with pyro.plate("data", N, subsample=idx):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(dec(z), 1.0).to_event(1), obs=x)

    def guide(x, idx):
        pyro.module("enc", enc)
        with pyro.plate("data", N, subsample=idx):
            noise = torch.randn(x.shape[0], 2)
            pyro.sample("z", dist.Delta(enc(torch.cat([x, noise], -1)), event_dim=1))

    loss = AVB(Disc(), DistributedOptim(Adam({"lr": 0.01})))
    svi = DistributedSVI(model, guide, Adam({"lr": 0.01}), loss)
    x = problem()[0]
    svi.evaluate_loss(x[shard(0, rank)], shard(0, rank))
    broadcast_parameters([disc])
    pyro.set_rng_seed(10 + rank)
    for t in range(5):
        svi.step(x[shard(t, rank)], shard(t, rank))
    return params()


def _uneven_run(rank: int) -> dict:
    """Shards of 3 and 5 of the total batch, averaged with ``shard_size`` weights and without."""
    pyro.clear_param_store()
    vae = VAE(seed=0)
    idx = global_batch(0)[:3] if rank == 0 else global_batch(0)[3:]
    args = vae_args(idx, 1)
    out = {}
    for weighted in (True, False):
        loss = Trace_ELBO()
        with poutine.trace(param_only=True) as capture:
            value = loss.loss_and_grads(vae.model, vae.guide, *args)
        ps = {s["name"]: s["value"].unconstrained() for s in capture.trace.nodes.values()}
        weight = len(idx) if weighted else None
        mean = all_reduce_gradients(ps.values(), loss=value, weight=weight)
        out["weighted" if weighted else "plain"] = {
            "loss": mean,
            "grad": {n: p.grad.clone() for n, p in ps.items()},
        }
        for p in ps.values():
            p.grad = None
    svi = DistributedSVI(
        vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO(),
        shard_size=lambda x, eps, idx, particles: len(idx),
    )  # fmt: skip
    out["init"], out["step_loss"], out["stepped"] = params(), svi.step(*args), params()
    return out


def _cd_setup(rank: int):
    pyro.clear_param_store()
    pyro.set_rng_seed(rank)
    loss = ContrastiveDivergence(1, persistent=True, num_chains=5)
    optim = Adam({"lr": 0.05})
    svi = DistributedSVI(rbm_model, lambda v, idx: None, optim, loss)
    svi.evaluate_loss(rbm_data()[shard(0, rank)], shard(0, rank))  # creates the parameters
    broadcast_parameters()
    return svi, optim, loss


def _cd_step(svi, rank: int, t: int) -> float:
    idx = shard(t, rank)
    return svi.step(rbm_data()[idx], idx)


def _annealed_setup(rank: int):
    pyro.clear_param_store()
    vae, loss, optim = VAE(seed=0), AnnealedELBO(LinearWarmup(15)), Adam({"lr": 0.05})
    svi = DistributedSVI(vae.model, vae.guide, optim, loss)
    svi.evaluate_loss(*vae_args(shard(0, rank), 1))
    broadcast_parameters()
    return svi, optim, loss


def _annealed_step(svi, rank: int, t: int) -> float:
    return svi.step(*vae_args(shard(t, rank), 1))


RESUMABLE = {"cd": (_cd_setup, _cd_step), "annealed": (_annealed_setup, _annealed_step)}


def _training_worker(rank: int, out: str) -> dict:
    result = {"main": is_main_process(), "vae": {n: _vae_run(rank, n) for n in LOSSES}}
    result["gan"], result["avb"] = _gan_run(rank), _avb_run(rank)
    result["uneven"] = _uneven_run(rank)
    for name, (setup, step) in RESUMABLE.items():
        svi, optim, loss = setup(rank)
        pyro.set_rng_seed(100 + rank)  # per-worker chains and noise
        for t in range(10):
            step(svi, rank, t)
        save_checkpoint(f"{out}/{name}.pt", optims={"optim": optim}, losses={"loss": loss})
        result[f"{name}_saved"] = {"chains": dict(getattr(loss, "chains", {})), "rng": rng()}
        for t in range(10, 20):
            step(svi, rank, t)
        result[name] = {"params": params(), "chains": dict(getattr(loss, "chains", {}))}
    return result


def _resume_worker(rank: int, out: str) -> dict:
    result = {}
    for name, (setup, step) in RESUMABLE.items():
        svi, optim, loss = setup(rank)
        pyro.set_rng_seed(999)  # overwritten by the checkpoint's per-worker random state
        load_checkpoint(f"{out}/{name}.pt", optims={"optim": optim}, losses={"loss": loss})
        result[f"{name}_loaded"] = {"chains": dict(getattr(loss, "chains", {})), "rng": rng()}
        for t in range(10, 20):
            step(svi, rank, t)
        result[name] = {"params": params(), "chains": dict(getattr(loss, "chains", {}))}
    return result


def _failure_worker(rank: int, out: str) -> dict:
    result = {}
    vae, loss = VAE(seed=0), Trace_ELBO()
    svi = DistributedSVI(vae.model, vae.guide, Adam({"lr": 0.05}), loss)
    svi.step(*vae_args(shard(0, rank), 1))
    for case in ("nan_data", "exception"):
        before = params()
        x, eps, idx, particles = vae_args(shard(1, rank), 1)
        if rank == 1 and case == "nan_data":
            x = x.clone()
            x[0, 0] = huge()  # an infinite loss and gradient
        if rank == 1 and case == "exception":
            x = x[:, :3]  # a shape error inside the model
        try:
            svi.step(x, eps, idx, particles)
            result[case] = {"error": None}
        except Exception as e:
            result[case] = {"error": type(e).__name__, "message": str(e)}
        result[case]["unchanged"] = all(torch.equal(before[n], p) for n, p in params().items())
    # the process group still works after a synchronized failure
    result["after"] = svi.step(*vae_args(shard(2, rank), 1))
    return result


# -- the tests ---------------------------------------------------------------------------------


def _dtype(request) -> torch.dtype:
    """The test's --dtype (module-scoped fixtures start before the default dtype is set)."""
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("distributed")
    return path, spawn(_training_worker, path, _dtype(request))


def _single_process_vae(name: str, init: dict) -> tuple[VAE, object]:
    make_loss, particles = LOSSES[name]
    pyro.clear_param_store()
    vae = VAE(seed=7)
    make_loss().loss(vae.model, vae.guide, *vae_args(global_batch(0), particles))
    set_params(init)
    return vae, make_loss


@pytest.mark.slow  # starts 2 worker processes
@pytest.mark.parametrize("name", LOSSES)
def test_averaged_gradient_is_the_full_batch_gradient(trained, name):
    _, ranks = trained
    r0, r1 = ranks[0]["vae"][name], ranks[1]["vae"][name]
    for n in r0["init"]:  # the broadcast replaced rank 1's own initial values by rank 0's
        assert torch.equal(r0["init"][n], r1["init"][n])
    vae, make_loss = _single_process_vae(name, r0["init"])
    particles = LOSSES[name][1]
    if name == "FreeBitsELBO":
        # the floor applies to each worker's batch average: the mean of the shards' gradients
        shards = [
            gradients(make_loss(), vae, vae_args(shard(0, r), particles), reduce=False)
            for r in range(WORLD)
        ]
        expected = {n: sum(s[n] for s in shards) / WORLD for n in shards[0]}
    else:
        expected = gradients(make_loss(), vae, vae_args(global_batch(0), particles), reduce=False)
    assert set(expected) == set(r0["grad"])
    for n, g in expected.items():
        assert torch.equal(r0["grad"][n], r1["grad"][n])
        assert g.abs().max() > 1e-3  # a real gradient
        torch.testing.assert_close(r0["grad"][n], g, rtol=0, atol=1e-6 * (1 + g.abs().max()))


@pytest.mark.slow  # starts 2 worker processes
def test_unequal_shards_weighted_by_size_give_the_union_batch(trained):
    """Shards of 3 and 5: weights ``shard_size`` give the single-process loss and gradient of
    the 8 indices; the plain mean weights the two shards' data unequally and does not."""
    _, ranks = trained
    r0, r1 = ranks[0]["uneven"], ranks[1]["uneven"]
    pyro.clear_param_store()
    vae = VAE(seed=0)
    args = vae_args(global_batch(0), 1)
    loss = Trace_ELBO()
    with poutine.trace(param_only=True) as capture:
        expected_loss = loss.loss_and_grads(vae.model, vae.guide, *args)
    ps = {s["name"]: s["value"].unconstrained() for s in capture.trace.nodes.values()}
    expected = {n: p.grad.clone() for n, p in ps.items()}
    for p in ps.values():
        p.grad = None
    for r in (r0, r1):
        assert r["weighted"]["loss"] == pytest.approx(expected_loss, rel=1e-5)
        assert r["plain"]["loss"] != pytest.approx(expected_loss, rel=1e-3)
        for n, g in expected.items():
            atol = 1e-5 * (1 + g.abs().max())
            torch.testing.assert_close(r["weighted"]["grad"][n], g, rtol=0, atol=atol)
        assert any(
            (r["plain"]["grad"][n] - g).abs().max() > 1e-3 * (1 + g.abs().max())
            for n, g in expected.items()
        )
    assert r0["step_loss"] == r1["step_loss"] == pytest.approx(expected_loss, rel=1e-5)
    pyro.clear_param_store()
    vae = VAE(seed=0)
    SVI(vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO()).step(*args)
    for n, p in params().items():
        assert torch.equal(r0["stepped"][n], r1["stepped"][n])
        torch.testing.assert_close(r0["stepped"][n], p, rtol=0, atol=1e-5)


@pytest.mark.slow  # starts 2 worker processes
@pytest.mark.parametrize("name", [n for n in LOSSES if n != "FreeBitsELBO"])
def test_twenty_steps_match_the_single_process_run(trained, name, rtol):
    _, ranks = trained
    tol = max(1e-9, rtol)  # 20 Adam steps on gradients that agree up to rounding
    r0, r1 = ranks[0]["vae"][name], ranks[1]["vae"][name]
    vae, make_loss = _single_process_vae(name, r0["init"])
    particles = LOSSES[name][1]
    svi = SVI(vae.model, vae.guide, Adam({"lr": 0.05}), make_loss())
    losses = [svi.step(*vae_args(global_batch(t), particles)) for t in range(STEPS)]
    final = params()
    for n in final:
        assert torch.equal(r0["final"][n], r1["final"][n])  # bit-identical on the workers
        assert not torch.equal(final[n], r0["init"][n])  # the run moved every parameter
        torch.testing.assert_close(r0["final"][n], final[n], rtol=tol, atol=tol)
    torch.testing.assert_close(torch.tensor(r0["losses"]), torch.tensor(losses), rtol=tol, atol=0)


@pytest.mark.slow  # starts 2 worker processes
def test_free_bits_parameters_identical_on_workers(trained):
    _, ranks = trained
    a, b = ranks[0]["vae"]["FreeBitsELBO"]["final"], ranks[1]["vae"]["FreeBitsELBO"]["final"]
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.slow  # starts 2 worker processes
@pytest.mark.parametrize("name", ["gan", "avb", "cd", "annealed"])
def test_parameters_identical_on_workers(trained, name):
    _, ranks = trained
    a, b = ranks[0][name], ranks[1][name]
    a, b = a.get("params", a), b.get("params", b)
    assert set(a) == set(b) and len(a) > 0
    for n in a:
        assert torch.isfinite(a[n]).all()
        assert torch.equal(a[n], b[n])


@pytest.mark.slow  # starts 2 worker processes
def test_persistent_chains_are_per_worker(trained):
    _, ranks = trained
    a, b = ranks[0]["cd"]["chains"]["v"], ranks[1]["cd"]["chains"]["v"]
    assert a.shape == b.shape == (5, 6)
    assert not torch.equal(a, b)


@pytest.mark.slow  # starts 2 worker processes
def test_only_rank_zero_is_main(trained):
    _, ranks = trained
    assert [r["main"] for r in ranks] == [True, False]


@pytest.fixture(scope="module")
def resumed(trained, request):
    return spawn(_resume_worker, trained[0], _dtype(request))


@pytest.mark.slow  # starts 2 worker processes
@pytest.mark.parametrize("name", list(RESUMABLE))
def test_resume_after_restart_is_bit_identical(trained, resumed, name):
    path, ranks = trained
    checkpoint = torch.load(path / f"{name}.pt", weights_only=True)
    assert checkpoint["world_size"] == WORLD
    if name == "annealed":
        assert [w["losses"]["loss"]["num_steps"] for w in checkpoint["workers"]] == [10, 10]
    for rank in range(WORLD):
        # the restart restores this worker's own chains and random state at the checkpoint
        saved, loaded = ranks[rank][f"{name}_saved"], resumed[rank][f"{name}_loaded"]
        assert torch.equal(saved["rng"], loaded["rng"])
        assert (
            saved["chains"].keys() == loaded["chains"].keys() == ({"v"} if name == "cd" else set())
        )
        for n in saved["chains"]:
            assert torch.equal(saved["chains"][n], loaded["chains"][n])
        a, b = ranks[rank][name], resumed[rank][name]
        for n in a["params"]:
            assert torch.equal(a["params"][n], b["params"][n])
        for n in a["chains"]:
            assert torch.equal(a["chains"][n], b["chains"][n])


@pytest.mark.slow  # starts 2 worker processes
def test_failure_on_one_worker_stops_all(tmp_path):
    ranks = spawn(_failure_worker, tmp_path, torch.get_default_dtype())
    for rank, r in enumerate(ranks):
        nan = r["nan_data"]
        assert nan["error"] == "FloatingPointError" and nan["unchanged"]
        if rank == 0:
            assert "worker(s) [1]" in nan["message"] and "non-finite" in nan["message"]
        else:
            assert "non-finite loss" in nan["message"]
        assert r["exception"]["unchanged"]
    assert ranks[0]["exception"]["error"] == "RuntimeError"
    assert "worker(s) [1] raised an exception" in ranks[0]["exception"]["message"]
    assert "worker(s)" not in ranks[1]["exception"]["message"]  # its own error, re-raised
    assert ranks[0]["after"] == ranks[1]["after"]


# -- one process: the same API without a process group -----------------------------------------


def test_single_process_step_equals_svi():
    vae, args = VAE(seed=0), vae_args(global_batch(0), 1)
    svi = DistributedSVI(vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(*args)
    ours = params()
    pyro.clear_param_store()
    vae = VAE(seed=0)
    SVI(vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO()).step(*args)
    assert all(torch.equal(ours[n], p) for n, p in params().items())


def test_single_process_non_finite_gradient_raises_before_the_step():
    vae = VAE(seed=0)
    x, eps, idx, particles = vae_args(global_batch(0), 1)
    svi = DistributedSVI(vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.evaluate_loss(x, eps, idx, particles)
    before = params()
    x = x.clone()
    x[0, 0] = huge()
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        svi.step(x, eps, idx, particles)
    assert all(torch.equal(before[n], p) for n, p in params().items())
    for _, p in pyro.get_param_store().named_parameters():  # the next step starts clean
        assert p.grad is None or not p.grad.any()


def test_loss_optimizers_must_be_distributed():
    loss = AVB(nn.Linear(2, 1), Adam({}))
    with pytest.raises(TypeError, match="discriminator_optim"):
        DistributedSVI(lambda: None, lambda: None, Adam({}), loss)
    with pytest.raises(TypeError, match=r"optim must be a pyro\.optim"):
        DistributedOptim(torch.optim.Adam)


def test_checkpoint_round_trip_and_errors(tmp_path):
    vae, loss, optim = VAE(seed=0), AnnealedELBO(LinearWarmup(5)), Adam({"lr": 0.05})
    svi = SVI(vae.model, vae.guide, optim, loss)
    args = vae_args(global_batch(0), 1)
    for _ in range(3):
        svi.step(*args)
    save_checkpoint(tmp_path / "c.pt", optims={"optim": optim}, losses={"loss": loss})
    saved, after = params(), [svi.step(*args) for _ in range(2)]
    pyro.clear_param_store()
    vae, loss, optim = VAE(seed=1), AnnealedELBO(LinearWarmup(5)), Adam({"lr": 0.05})
    svi = SVI(vae.model, vae.guide, optim, loss)
    svi.evaluate_loss(*args)
    load_checkpoint(tmp_path / "c.pt", optims={"optim": optim}, losses={"loss": loss})
    assert loss.step == 3 and all(torch.equal(saved[n], p) for n, p in params().items())
    assert [svi.step(*args) for _ in range(2)] == after
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["world_size"] = 2
    torch.save(state, tmp_path / "two.pt")
    with pytest.raises(ValueError, match="saved by 2 workers"):
        load_checkpoint(tmp_path / "two.pt")
    pyro.clear_param_store()
    with pytest.raises(ValueError, match="not in the param store"):
        load_checkpoint(tmp_path / "c.pt")


def test_checkpoint_rolls_back_a_live_run(tmp_path):
    """Loading into the same, still running objects (the optimizers have stepped since the
    save): the optimizer state is the saved one at once (Pyro's ``set_state`` alone would
    keep the moments and step counts of the steps since), so the run repeats itself exactly;
    a parameter first stepped after the save gets a fresh optimizer, as it had then."""
    vae, loss = VAE(seed=0), AnnealedELBO(LinearWarmup(5))
    optim = ClippedAdam({"lr": 0.05, "lrd": 0.9})
    svi = SVI(vae.model, vae.guide, optim, loss)
    args = vae_args(global_batch(0), 1)
    for _ in range(3):
        svi.step(*args)
    save_checkpoint(tmp_path / "c.pt", optims={"optim": optim}, losses={"loss": loss})
    saved_state = copy.deepcopy(optim.get_state())  # get_state shares the live state
    after = [svi.step(*args) for _ in range(3)]
    final = params()
    late = pyro.param("late_param", torch.zeros(()))  # stepped only after the save
    late.grad = torch.ones(())
    optim([late])
    load_checkpoint(tmp_path / "c.pt", optims={"optim": optim}, losses={"loss": loss})
    assert late not in optim.optim_objs  # starts afresh when next stepped
    restored = optim.get_state()
    assert restored.keys() == saved_state.keys()
    for name, state in saved_state.items():
        for key, value in state["state"][0].items():
            got = restored[name]["state"][0][key]
            same = torch.equal(got, value) if isinstance(value, torch.Tensor) else got == value
            assert same, (name, key)
        assert restored[name]["param_groups"][0]["lr"] == state["param_groups"][0]["lr"]
    pyro.get_param_store().__delitem__("late_param")
    assert [svi.step(*args) for _ in range(3)] == after
    assert all(torch.equal(final[n], p) for n, p in params().items())


def test_single_process_shard_size_is_checked_before_the_step():
    vae = VAE(seed=0)
    args = vae_args(global_batch(0), 1)
    expected = Trace_ELBO().loss(vae.model, vae.guide, *args)  # also creates the parameters
    with pytest.raises(TypeError, match="shard_size must be a function"):
        DistributedSVI(vae.model, vae.guide, Adam({}), Trace_ELBO(), shard_size=8)
    for size, error in ((0, ValueError), (float("nan"), ValueError), ("8", TypeError)):
        svi = DistributedSVI(
            vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO(), shard_size=lambda *a, s=size: s
        )
        before = params()
        with pytest.raises(error, match="weight"):
            svi.step(*args)
        after = params()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[n], p) for n, p in after.items())
    svi = DistributedSVI(
        vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO(), shard_size=lambda *a: 8
    )
    assert svi.step(*args) == pytest.approx(expected, rel=1e-6)


def test_distributed_optim_forwards_to_a_scheduler():
    """A wrapped learning-rate scheduler keeps its ``step()`` and ``optim_objs``."""
    vae = VAE(seed=0)
    scheduler = pyro.optim.StepLR(
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}, "step_size": 1, "gamma": 0.5}
    )
    optim = DistributedOptim(scheduler)
    svi = SVI(vae.model, vae.guide, optim, Trace_ELBO())
    args = vae_args(global_batch(0), 1)
    svi.step(*args)
    assert optim.optim_objs is scheduler.optim_objs and len(optim.optim_objs) > 0
    optim.step()  # the scheduler's epoch step
    lrs = {s.optimizer.param_groups[0]["lr"] for s in scheduler.optim_objs.values()}
    assert lrs == {0.05}
    with pytest.raises(AttributeError):
        _ = optim.no_such_attribute
