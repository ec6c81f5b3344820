"""Trains the same flow with and without a 2-replica MirroredStrategy (two logical CPUs).

Prints one JSON line; run by tests/test_distribute.py in a fresh process, since logical
devices must be configured before TensorFlow initialises.
"""

import json

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kflows  # noqa: E402
from kflows import data  # noqa: E402

x = data.two_moons(512, seed=0)


def make():
    flow = kflows.maf(num_layers=2, hidden_units=(16, 16))
    flow.build((None, 2))
    rng = np.random.default_rng(0)
    flow.set_weights([0.3 * rng.standard_normal(w.shape) for w in flow.get_weights()])
    flow.compile(optimizer=keras.optimizers.SGD(0.05))
    return flow


strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
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
        }
    )
)
