"""FlowJAX reference: ``masked_autoregressive_flow`` / ``coupling_flow`` with a jitted optax
Adam step.

Run by ``benchmarks/run.py`` with the interpreter of a separate environment
(``pip install jax flowjax optax``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402


def main():
    spec = common.parse_spec(__doc__)
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    import paramax
    from flowjax import flows
    from flowjax.bijections import Affine, RationalQuadraticSpline
    from flowjax.distributions import Normal

    train, test, batches = common.load(spec)
    kind = common.FLOWS[spec["flow"]]
    timer = common.Timer(spec["window"])
    if kind["transform"] == "spline":
        transformer = RationalQuadraticSpline(
            knots=common.SPLINE_BINS, interval=common.SPLINE_BOUND
        )
    else:
        transformer = Affine()
    build = (
        flows.masked_autoregressive_flow
        if kind["structure"] == "autoregressive"
        else (flows.coupling_flow)
    )
    flow = build(
        jax.random.key(spec["seed"]),
        base_dist=Normal(jnp.zeros(spec["dim"])),
        transformer=transformer,
        flow_layers=spec["layers"],
        nn_width=spec["hidden"],
        nn_depth=spec["depth"],
    )
    params, static = eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    opt = optax.adam(spec["learning_rate"])
    opt_state = opt.init(params)

    def loss_fn(params, x):
        dist = paramax.unwrap(eqx.combine(params, static))
        return -dist.log_prob(x).mean()

    @eqx.filter_jit
    def step(params, opt_state, x):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(params, x)
        updates, opt_state = opt.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, loss

    params, opt_state, loss = step(params, opt_state, jnp.asarray(batches[0]))
    loss.block_until_ready()
    timer.after_first_step()
    for x in batches[1:]:
        params, opt_state, loss = step(params, opt_state, jnp.asarray(x))
        timer.after_step(loss.block_until_ready)

    dist = paramax.unwrap(eqx.combine(params, static))
    log_prob_fn = eqx.filter_jit(lambda d, x: d.log_prob(x))

    def log_prob(x):
        return log_prob_fn(dist, x)

    n_eval = spec["eval_batch"]
    nll = -float(
        np.mean(
            np.concatenate(
                [
                    np.asarray(log_prob(jnp.asarray(test[i : i + n_eval])))
                    for i in range(0, len(test), n_eval)
                ]
            )
        )
    )
    x_eval = jnp.asarray(np.resize(test, (n_eval, spec["dim"])))
    lp_s = common.best_time(lambda: log_prob(x_eval).block_until_ready(), spec["throughput_reps"])
    sample_fn = eqx.filter_jit(lambda d, key: d.sample(key, (n_eval,)))

    def sample(key):
        return sample_fn(dist, key)

    key = jax.random.key(1)
    sample_s = common.best_time(lambda: sample(key).block_until_ready(), spec["throughput_reps"])
    x1 = jnp.asarray(test[:1])
    b1 = common.best_time(lambda: log_prob(x1).block_until_ready(), spec["latency_reps"])
    import flowjax

    common.emit(
        spec,
        "flowjax",
        {
            **timer.ms_per_step(),
            "first_step_s": timer.first_step_s,
            "test_nll": nll,
            "log_prob_pts_per_s": n_eval / lp_s,
            "sample_pts_per_s": n_eval / sample_s,
            "inprocess_log_prob_b1_ms": b1 * 1e3,
            "versions": {"jax": jax.__version__, "flowjax": getattr(flowjax, "__version__", "?")},
        },
    )


if __name__ == "__main__":
    main()
