"""Raw TFP reference, as a TF user writes it today: TFP bijectors, ``tfb.AutoregressiveNetwork``
or a ``tf_keras`` MLP as the conditioner, and an Adam step in a ``tf.function``.

Run by ``benchmarks/run.py`` in the kflows environment (TF, TFP, tf_keras); none of this is
kflows code. ``spec["jit"]`` = true compiles the step with XLA (default: off, TF's default).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402


def build(spec, tf, tfp, tfk):
    tfb, tfd = tfp.bijectors, tfp.distributions
    dim, hidden = spec["dim"], [spec["hidden"]] * spec["depth"]
    spline = common.FLOWS[spec["flow"]]["transform"] == "spline"
    bins, bound = common.SPLINE_BINS, common.SPLINE_BOUND
    num_params = 3 * bins - 1 if spline else 2

    def element_wise(params):
        if spline:
            w, h, s = tf.split(params, [bins, bins, bins - 1], axis=-1)
            return tfb.RationalQuadraticSpline(
                bin_widths=2 * bound * tf.nn.softmax(w),
                bin_heights=2 * bound * tf.nn.softmax(h),
                knot_slopes=tf.nn.softplus(s) + 1e-3,
                range_min=-bound,
            )
        shift, log_scale = params[..., 0], params[..., 1]
        log_scale = common.LOG_SCALE_BOUND * tf.tanh(log_scale / common.LOG_SCALE_BOUND)
        return tfb.Shift(shift)(tfb.Scale(log_scale=log_scale))

    nets, bijectors = [], []
    for i in range(spec["layers"]):
        if i:
            bijectors.append(tfb.Permute(np.arange(dim)[::-1].astype(np.int32)))
        if common.FLOWS[spec["flow"]]["structure"] == "autoregressive":
            made = tfb.AutoregressiveNetwork(
                params=num_params,
                hidden_units=hidden,
                activation="relu",
                kernel_initializer="glorot_uniform",
            )
            nets.append(made)
            bijectors.append(
                tfb.MaskedAutoregressiveFlow(bijector_fn=lambda x, made=made: element_wise(made(x)))
            )
        else:
            kept = dim // 2
            mlp = tfk.Sequential(
                [tfk.layers.Dense(h, activation="relu") for h in hidden]
                + [
                    tfk.layers.Dense((dim - kept) * num_params, kernel_initializer="zeros"),
                    tfk.layers.Reshape((dim - kept, num_params)),
                ]
            )
            mlp.build((None, kept))
            nets.append(mlp)
            bijectors.append(
                tfb.RealNVP(
                    num_masked=kept,
                    bijector_fn=lambda x, units, mlp=mlp: element_wise(mlp(x)),
                )
            )
    base = tfd.MultivariateNormalDiag(loc=tf.zeros(dim))
    # Chain applies its last bijector first: list them base side first.
    return tfd.TransformedDistribution(base, tfb.Chain(bijectors[::-1])), nets


def main():
    spec = common.parse_spec(__doc__)
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras as tfk

    train, test, batches = common.load(spec)
    dim = train.shape[1]
    timer = common.Timer(spec["window"])
    dist, nets = build(spec, tf, tfp, tfk)
    dist.log_prob(test[:2])  # builds the networks' variables
    # The bijector_fn closures hide the networks from tf.Module: collect their variables.
    variables = [v for net in nets for v in net.trainable_variables]
    opt = tfk.optimizers.Adam(spec["learning_rate"])

    @tf.function(jit_compile=bool(spec.get("jit")))
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    step(tf.constant(batches[0])).numpy()
    timer.after_first_step()
    for x in batches[1:]:
        loss = step(tf.constant(x))
        timer.after_step(loss.numpy)

    signature = [tf.TensorSpec([None, dim], tf.float32)]
    log_prob = tf.function(dist.log_prob, input_signature=signature)
    n_eval = spec["eval_batch"]
    nll = -float(
        np.mean(
            np.concatenate(
                [log_prob(test[i : i + n_eval]).numpy() for i in range(0, len(test), n_eval)]
            )
        )
    )
    x_eval = tf.constant(np.resize(test, (n_eval, dim)))
    lp_s = common.best_time(lambda: log_prob(x_eval).numpy(), spec["throughput_reps"])
    sample = tf.function(
        lambda seed: dist.sample(n_eval, seed=seed), input_signature=[tf.TensorSpec([2], tf.int32)]
    )
    seed = tf.constant([0, 1], tf.int32)
    sample_s = common.best_time(lambda: sample(seed).numpy(), spec["throughput_reps"])

    x1 = tf.constant(test[:1])
    inproc_1 = common.best_time(lambda: log_prob(x1).numpy(), spec["latency_reps"])
    module = tf.Module()
    module.nets, module.log_prob = nets, log_prob
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp)
        loaded = tf.saved_model.load(tmp)
        export_build_s = time.perf_counter() - t0
        export_1 = common.best_time(lambda: loaded.log_prob(x1).numpy(), spec["latency_reps"])
        export_big = common.best_time(
            lambda: loaded.log_prob(x_eval).numpy(), spec["throughput_reps"]
        )

    common.emit(
        spec,
        "tfp",
        {
            **timer.ms_per_step(),
            "first_step_s": timer.first_step_s,
            "test_nll": nll,
            "log_prob_pts_per_s": n_eval / lp_s,
            "sample_pts_per_s": n_eval / sample_s,
            "inprocess_log_prob_b1_ms": inproc_1 * 1e3,
            "export_log_prob_b1_ms": export_1 * 1e3,
            "export_log_prob_pts_per_s": n_eval / export_big,
            "export_build_s": export_build_s,
            "versions": {"tensorflow": tf.__version__, "tfp": tfp.__version__},
        },
    )


if __name__ == "__main__":
    main()
