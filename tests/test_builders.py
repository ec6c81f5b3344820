"""The builders: one keyword set, validated counts, built flows from ``event_dim``."""

import numpy as np
import pytest

import kflows
from kflows.cli import BUILDERS

#: Builders without networks: they refuse hidden_units rather than ignore it.
WITHOUT_NETWORKS = {"gf"}


def _tiny(name, **kwargs):
    if name not in WITHOUT_NETWORKS:
        kwargs["hidden_units"] = (4,)
    return getattr(kflows, name)(num_layers=1, **kwargs)


def test_a_builder_without_networks_refuses_hidden_units():
    with pytest.raises(ValueError, match="hidden_units=None.*got \\(4,\\)"):
        kflows.gf(hidden_units=(4,))


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_returns_a_built_flow_from_event_dim(name):
    flow = _tiny(name, event_dim=3)
    assert flow.built and flow.event_dim == 3
    assert flow.trainable_variables  # the weights exist before any data is seen
    log_prob = flow.log_prob(np.zeros((2, 3), np.float32)).numpy()
    assert log_prob.shape == (2,) and np.all(np.isfinite(log_prob))


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_builds_a_conditional_flow(name):
    flow = _tiny(name, event_dim=2, context_dim=3)
    assert flow.built and flow.event_dim == 2 and flow.context_dim == 3
    log_prob = flow.log_prob(np.zeros((4, 2), np.float32), np.ones((4, 3), np.float32))
    assert log_prob.shape == (4,)


@pytest.mark.parametrize("name", BUILDERS)
def test_without_event_dim_the_flow_builds_on_its_first_data(name):
    flow = _tiny(name)
    assert not flow.built
    flow.log_prob(np.zeros((2, 2), np.float32))
    assert flow.event_dim == 2


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("keyword", ["num_layers", "event_dim", "context_dim"])
@pytest.mark.parametrize(
    "value, error",
    [(2.5, TypeError), (True, TypeError), ("3", TypeError), (0, ValueError), (-1, ValueError)],
)
def test_counts_are_integers_of_at_least_one_never_coerced(name, keyword, value, error):
    kwargs = {"num_layers": 1, keyword: value}
    if name not in WITHOUT_NETWORKS:
        kwargs["hidden_units"] = (4,)
    with pytest.raises(error, match=rf"Expected {keyword}.*got {value!r}"):
        getattr(kflows, name)(**kwargs)


def test_numpy_integers_are_counts():
    flow = kflows.maf(num_layers=np.int64(2), hidden_units=(4,), event_dim=np.int32(2))
    assert flow.event_dim == 2 and len(flow.flow_layers) == 3  # two MAFs and a Reverse


def test_glow_takes_num_layers_like_every_builder():
    flow = kflows.glow(num_layers=2, hidden_units=(4,), event_dim=2)
    kinds = [type(layer) for layer in flow.flow_layers]
    assert kinds == [kflows.ActNorm, kflows.LULinear, kflows.Coupling] * 2
    with pytest.raises(TypeError, match="num_steps"):
        kflows.glow(num_steps=2)
