"""save_checkpoint / load_checkpoint in one process: GAN, AVB and a DistributedOptim resume bit
for bit (also from a checkpoint made before the first step), and a checkpoint that does not fit
is refused before anything is restored."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen.infer import AVB, GAN, DistributedOptim, load_checkpoint, save_checkpoint
from tests.infer.test_nonfinite import Critic  # (z, x) -> one logit per row

STEPS = 6


def data(*shape):
    g = torch.Generator().manual_seed(123)
    return 4 * torch.rand(shape, generator=g, dtype=torch.get_default_dtype()) - 2


def params() -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in pyro.get_param_store().named_parameters()}


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        assert a[n].dtype == b[n].dtype and torch.equal(a[n], b[n]), n


# -- the runs: build(seed) makes every object from scratch and creates every parameter --------


def gan_build(seed: int):
    def generator(num):
        shift = pyro.param("shift", torch.tensor(-1.0))
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        return (z + shift).unsqueeze(-1)

    torch.manual_seed(seed)  # a resumed run starts from other initial values
    critic = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    gan = GAN(generator, critic, Adam({"lr": 0.02}), Adam({"lr": 0.01}), critic_steps=2)
    gan.sample(1)  # creates the generator's parameters
    x = data(16, 1) + 1.0
    return (lambda: gan.step(x)), {}, {"gan": gan}


def avb_build(seed: int):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(1.5 * z, 1.0).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.tensor(0.8 + seed))
        s = pyro.param("s", torch.tensor(0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(a * x + s * torch.randn_like(x), event_dim=1))

    torch.manual_seed(seed)
    avb, optim, x = AVB(Critic(), Adam({"lr": 0.01})), Adam({"lr": 0.01}), data(8, 1)
    svi = SVI(model, guide, optim, avb)
    svi.evaluate_loss(x)  # creates the model's and guide's parameters
    return (lambda: svi.step(x)), {"svi": optim}, {"avb": avb}


def distributed_optim_build(seed: int):
    def model(x):
        w = pyro.param("w", torch.tensor(0.7 + seed))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w * z, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, 0.5))

    optim, x = DistributedOptim(Adam({"lr": 0.05})), data(5)
    svi = SVI(model, guide, optim, Trace_ELBO())
    svi.evaluate_loss(x)
    return (lambda: svi.step(x)), {"optim": optim}, {}


BUILDS = {"gan": gan_build, "avb": avb_build, "distributed-optim": distributed_optim_build}


def run(build, *, stop=None, path=None):
    pyro.clear_param_store()
    step, optims, losses = build(0)
    pyro.set_rng_seed(0)
    values = []
    for i in range(STEPS):
        if i == stop:
            save_checkpoint(path, optims=optims, losses=losses, extra={"step": i})
            pyro.clear_param_store()
            step, optims, losses = build(1)
            pyro.set_rng_seed(999)  # the checkpoint's random state must take over
            assert load_checkpoint(path, optims=optims, losses=losses) == {"step": i}
        values.append(step())
    return values, params()


@pytest.mark.parametrize("stop", [0, 3])
@pytest.mark.parametrize("name", list(BUILDS))
def test_resumed_run_is_bit_identical(tmp_path, name, stop):
    losses, final = run(BUILDS[name])
    resumed, resumed_final = run(BUILDS[name], stop=stop, path=tmp_path / "c.pt")
    assert resumed == losses
    assert_same_params(final, resumed_final)


# -- a checkpoint that does not fit changes nothing ----------------------------------------------


@pytest.fixture
def saved(tmp_path):
    pyro.clear_param_store()
    step, optims, losses = avb_build(0)
    pyro.set_rng_seed(0)
    for _ in range(2):
        step()
    path = tmp_path / "c.pt"
    save_checkpoint(path, optims=optims, losses=losses)
    return path


def fresh_avb():
    """A new run (other values) that has taken one step: state a failed load must keep."""
    pyro.clear_param_store()
    step, optims, losses = avb_build(1)
    pyro.set_rng_seed(5)
    step()
    return optims, losses


def current_state(optims, losses) -> dict:
    return {
        "params": params(),
        "optims": {k: repr(v.get_state()) for k, v in optims.items()},
        "losses": {k: repr(v.state_dict()) for k, v in losses.items()},
        "rng": torch.get_rng_state(),
    }


def assert_unchanged(before: dict, optims, losses) -> None:
    after = current_state(optims, losses)
    assert_same_params(before["params"], after["params"])
    assert before["optims"] == after["optims"] and before["losses"] == after["losses"]
    assert torch.equal(before["rng"], after["rng"])


def test_a_missing_optimizer_or_loss_state_is_refused_before_restoring(saved):
    optims, losses = fresh_avb()
    before = current_state(optims, losses)
    with pytest.raises(ValueError, match=r"no optimizer state named \['other'\]"):
        load_checkpoint(saved, optims={**optims, "other": Adam({})}, losses=losses)
    with pytest.raises(ValueError, match=r"no loss state named \['gan'\]"):
        load_checkpoint(saved, optims=optims, losses={"gan": losses["avb"]})
    assert_unchanged(before, optims, losses)


def test_a_missing_parameter_is_refused_before_any_is_written(saved):
    optims, losses = fresh_avb()
    del pyro.get_param_store()["s"]  # the checkpoint holds "s", saved after "a"
    before = current_state(optims, losses)
    with pytest.raises(ValueError, match=r"'s'.*is not in the param store"):
        load_checkpoint(saved, optims=optims, losses=losses)
    assert_unchanged(before, optims, losses)  # "a" keeps this run's value


def test_a_parameter_of_another_shape_or_dtype_is_refused(saved):
    optims, losses = fresh_avb()
    store = pyro.get_param_store()
    other = torch.float32 if torch.get_default_dtype() == torch.float64 else torch.float64
    store["s"] = store["s"].detach().to(other)
    before = current_state(optims, losses)
    with pytest.raises(ValueError, match=f"'s' is {torch.get_default_dtype()} but {other}"):
        load_checkpoint(saved, optims=optims, losses=losses)
    store["s"] = torch.zeros(3)
    before = current_state(optims, losses)
    with pytest.raises(ValueError, match=r"'s' \(\) has shape \(3,\)"):
        load_checkpoint(saved, optims=optims, losses=losses)
    assert_unchanged(before, optims, losses)


def test_arguments_and_files_are_checked(saved, tmp_path):
    optim = Adam({})
    with pytest.raises(TypeError, match="optims must be a mapping"):
        save_checkpoint(tmp_path / "x.pt", optims=optim)
    with pytest.raises(TypeError, match=r"optims\['svi'\] must be a pyro.optim"):
        save_checkpoint(tmp_path / "x.pt", optims={"svi": torch.optim.Adam})
    with pytest.raises(TypeError, match="losses must be a mapping"):
        save_checkpoint(tmp_path / "x.pt", losses=[Trace_ELBO()])
    with pytest.raises(TypeError, match="extra must be a mapping"):
        save_checkpoint(tmp_path / "x.pt", extra=3)
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(TypeError, match="optims must be a mapping"):
        load_checkpoint(saved, optims=optim)
    torch.save({"params": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint written by save_checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
