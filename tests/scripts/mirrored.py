"""Trains the same flow with and without a 2-replica MirroredStrategy (two logical CPUs).

Also checks BatchNorm's synchronised statistics directly (under two replicas, each holding
half of a batch, the training map, its log-det and the moving averages are those of one
device on the whole batch), and variational inference under the strategy: the README's
``strategy.run`` step with ``tfp.vi.monte_carlo_variational_loss`` trains like one device
that draws both replicas' samples.

Prints one JSON line; run by tests/test_distribute.py in a fresh process, since logical
devices must be configured before TensorFlow initialises.
"""

import json

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import kflows  # noqa: E402
from kflows import data  # noqa: E402

x = data.two_moons(512, seed=0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def make():
    flow = kflows.Flow(
        [
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (16, 16)}),
            kflows.BatchNorm(momentum=0.5),  # its statistics must span both replicas
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (16, 16)}),
        ]
    )
    flow.build((None, 2))
    rng = np.random.default_rng(0)
    for weight in flow.trainable_weights:
        weight.assign(0.3 * rng.standard_normal(weight.shape))
    flow.compile(optimizer=keras.optimizers.SGD(0.05))
    return flow


def batch_norm_check():
    """BatchNorm (float64) on a batch split over the replicas vs on one device."""
    rng = np.random.default_rng(1)
    batch = rng.normal([3.0, -2.0], [0.5, 4.0], size=(64, 2))

    def make_layer():
        layer = kflows.BatchNorm(momentum=0.5, dtype="float64")
        layer.build((None, 2))
        layer.log_gamma.assign([0.3, -0.2])
        layer.beta.assign([0.1, 0.5])
        return layer

    def density(layer, y):
        bijector = layer.bijector(training=True)
        return bijector.inverse(y), bijector.inverse_log_det_jacobian(y, event_ndims=1)

    with strategy.scope():
        mirrored = make_layer()
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(batch[32 * ctx.replica_id_in_sync_group :][:32])
    )
    u, ildj = tf.function(lambda y: strategy.run(lambda v: density(mirrored, v), args=(y,)))(halves)
    single = make_layer()
    u_single, ildj_single = density(single, tf.constant(batch))
    u = np.concatenate([t.numpy() for t in strategy.experimental_local_results(u)])
    ildj = np.concatenate([t.numpy() for t in strategy.experimental_local_results(ildj)])
    moving = {}
    for name in ("moving_mean", "moving_variance"):
        copies = [
            v.numpy() for v in strategy.experimental_local_results(getattr(mirrored, name).value)
        ]
        moving[name] = max(float(np.abs(c - getattr(single, name).numpy()).max()) for c in copies)
    return {
        "u": float(np.abs(u - u_single.numpy()).max()),
        "ildj": float(np.abs(ildj - ildj_single.numpy()).max()),
        # How far the halves' own statistics are from the batch's: what syncing fixes.
        "half_vs_batch_mean": float(np.abs(batch[:32].mean(0) - batch.mean(0)).max()),
        **moving,
    }


def variational_check(steps=10):
    """VI with a flow made in the strategy's scope: each replica draws its own samples."""
    target = tfp.distributions.MultivariateNormalDiag(loc=[1.0, -1.0], scale_diag=[0.5, 2.0])

    def make_vi():
        flow = kflows.maf(num_layers=2, hidden_units=(8,), event_dim=2)
        rng = np.random.default_rng(0)
        for weight in flow.trainable_weights:
            weight.assign(0.3 * rng.standard_normal(weight.shape))
        return flow, keras.optimizers.SGD(0.01)

    def vi_loss(flow, seed):
        return tfp.vi.monte_carlo_variational_loss(
            target.log_prob, flow.distribution(), sample_size=32, seed=seed
        )

    with strategy.scope():
        flow, optimizer = make_vi()

    @tf.function
    def distributed_step(seed):
        def replica_step():
            context = tf.distribute.get_replica_context()
            replica_seed = tf.random.experimental.stateless_fold_in(
                seed, context.replica_id_in_sync_group
            )
            with tf.GradientTape() as tape:
                share = vi_loss(flow, replica_seed) / context.num_replicas_in_sync
            grads = tape.gradient(share, flow.trainable_variables)
            optimizer.apply_gradients(zip(grads, flow.trainable_variables, strict=True))
            return share

        return strategy.reduce("SUM", strategy.run(replica_step), axis=None)

    single, single_optimizer = make_vi()

    @tf.function
    def single_step(seed):  # the same samples: both replicas' seeds, on one device
        with tf.GradientTape() as tape:
            losses = [
                vi_loss(single, tf.random.experimental.stateless_fold_in(seed, r)) for r in (0, 1)
            ]
            loss = tf.add_n(losses) / 2.0
        grads = tape.gradient(loss, single.trainable_variables)
        single_optimizer.apply_gradients(zip(grads, single.trainable_variables, strict=True))
        return loss

    losses, single_losses = [], []
    for step in range(steps):
        seed = tf.constant([0, step])
        losses.append(float(distributed_step(seed)))
        single_losses.append(float(single_step(seed)))
    copies = strategy.experimental_local_results(flow.trainable_weights[0].value)
    return {
        "loss": losses,
        "loss_single": single_losses,
        "max_weight_diff": max(
            float(np.abs(a - b).max())
            for a, b in zip(flow.get_weights(), single.get_weights(), strict=True)
        ),
        "replica_diff": float(np.abs(copies[0].numpy() - copies[1].numpy()).max()),
    }


with strategy.scope():
    mirrored = make()
single = make()
before = mirrored.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
hist_m = mirrored.fit(x, epochs=2, batch_size=256, shuffle=False, verbose=0).history["loss"]
hist_s = single.fit(x, epochs=2, batch_size=256, shuffle=False, verbose=0).history["loss"]
after = mirrored.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
diff = max(
    float(np.abs(a - b).max())
    for a, b in zip(mirrored.get_weights(), single.get_weights(), strict=True)
)
# Every replica holds the same moving statistics (each updates its own copy).
copies = [
    v.numpy()
    for v in strategy.experimental_local_results(mirrored.flow_layers[1].moving_mean.value)
]
print(
    json.dumps(
        {
            "replicas": strategy.num_replicas_in_sync,
            "before": before,
            "after": after,
            "nll": float(-mirrored.log_prob(x).numpy().mean()),
            "loss_mirrored": hist_m,
            "loss_single": hist_s,
            "max_weight_diff": diff,
            "moving_mean_replica_diff": float(np.abs(copies[0] - copies[1]).max()),
            "batch_norm": batch_norm_check(),
            "variational": variational_check(),
        }
    )
)
