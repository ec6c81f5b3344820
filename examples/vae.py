"""A variational autoencoder whose posterior q(z | x) is a conditional flow (Keras 3).

The data are scikit-learn's 8 x 8 handwritten digits (1,797 images, each pixel binarised
at half its range, 0..16, and modelled as a Bernoulli variable). The encoder maps an image
to a context vector; the posterior is a kflows flow of inverse autoregressive layers conditioned on
that context; it transforms a diagonal Gaussian the encoder also outputs (Kingma et al.
2016): ``tfd.TransformedDistribution(gaussian, flow.bijector(context=h))``, so one network
pass both samples ``z`` and scores it. The same model without the flow, a diagonal
Gaussian posterior, is the baseline. Both train with ``model.fit`` on the negative ELBO.

The script prints each posterior's test ELBO and its importance-weighted bound on
log p(x) (higher is better for both; the gap between them estimates, from below, what a
better posterior could still add to the ELBO), and saves images decoded from prior draws
of the flow VAE.

Usage:
    python examples/vae.py [--epochs 60] [--latent 4] [--out outputs/vae] [--quick]
"""

import argparse
import math
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.datasets import load_digits

import kflows

tfd = tfp.distributions


class VAE(keras.Model):
    """Bernoulli decoder, standard normal prior, and a Gaussian or a flow posterior."""

    def __init__(self, latent, posterior="flow", hidden=128, context=32, **kwargs):
        super().__init__(**kwargs)
        self.latent, self.context = latent, context if posterior == "flow" else 0
        self.encoder = keras.Sequential(  # -> loc, scale and (for the flow) its context
            [
                keras.layers.Dense(hidden, activation="relu"),
                keras.layers.Dense(2 * latent + self.context),
            ]
        )
        self.decoder = keras.Sequential(
            [keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(64)]
        )
        self.flow = None
        if posterior == "flow":
            layers = []
            for _ in range(4):
                layers += [
                    kflows.InverseAutoregressive(conditioner={"hidden_units": (64, 64)}),
                    kflows.Reverse(),
                ]
            self.flow = kflows.Flow(layers[:-1], context_dim=context, event_dim=latent)
        self.prior = tfd.MultivariateNormalDiag(loc=tf.zeros(latent))
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def posterior(self, x):
        """q(z | x) for a batch of images: a distribution with batch shape ``[B]``.

        A diagonal Gaussian from the encoder, pushed through the flow's bijector conditioned
        on the encoder's context features (the identity at initialisation, so the flow VAE
        starts as the Gaussian one).
        """
        loc, scale, context = tf.split(
            self.encoder(x), [self.latent, self.latent, self.context], -1
        )
        gaussian = tfd.MultivariateNormalDiag(loc, tf.nn.softplus(scale) + 1e-4)
        if self.flow is None:
            return gaussian
        return tfd.TransformedDistribution(gaussian, self.flow.bijector(context=context))

    def log_weights(self, x, num_draws=1):
        """``log p(x, z) - log q(z | x)`` for ``num_draws`` draws of z per image: ``[K, B]``."""
        z, log_q = self.posterior(x).experimental_sample_and_log_prob(num_draws)
        logits = self.decoder(z)
        # The Bernoulli log-likelihood of the pixels is minus their cross-entropy.
        labels = tf.broadcast_to(x, tf.shape(logits))
        log_lik = -tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1
        )
        return log_lik + self.prior.log_prob(z) - log_q

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self.log_weights(x))  # the negative ELBO, in nats
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def bounds(self, x, num_draws):
        """Mean ELBO and importance-weighted bound (``num_draws`` draws) over ``x``."""
        log_w = self.log_weights(x, num_draws)
        iwae = tf.reduce_logsumexp(log_w, axis=0) - math.log(num_draws)
        return float(tf.reduce_mean(log_w)), float(tf.reduce_mean(iwae))


def digits(seed=0):
    """scikit-learn's digits, binarised pixels, split 80/20 into (train, test)."""
    images = (load_digits().data > 8).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(0.8 * len(images))
    return images[order[:cut]], images[order[cut:]]


def save_samples(model, path, rows=4, cols=10):
    """Decodes prior draws into a grid of Bernoulli means (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = model.prior.sample([1, rows * cols], seed=(5, 6))  # [1, N, latent], as in training
    means = tf.sigmoid(model.decoder(z)).numpy().reshape(rows, cols, 8, 8)
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows))
    for ax, image in zip(axes.ravel(), means.reshape(-1, 8, 8), strict=True):
        ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=1.0)
        ax.axis("off")
    fig.suptitle("images decoded from prior draws (flow-posterior VAE)")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--latent", type=int, default=4)
    parser.add_argument("--draws", type=int, default=100, help="importance samples per image")
    parser.add_argument("--out", default=os.path.join("outputs", "vae"), help="figure folder")
    parser.add_argument("--quick", action="store_true", help="CI sizes: 15 epochs")
    args = parser.parse_args()
    epochs = 15 if args.quick else args.epochs
    os.makedirs(args.out, exist_ok=True)

    train, test = digits()
    print(f"digits: train {train.shape}, test {test.shape}; latent dimension {args.latent}")
    print(f"{'posterior':<10} {'weights':>8} {'test ELBO':>10} {'test IWAE':>10}  (nats/image)")
    for kind in ("gaussian", "flow"):
        keras.utils.set_random_seed(0)
        model = VAE(args.latent, posterior=kind)
        model.compile(optimizer=keras.optimizers.Adam(2e-3))
        model.fit(train, epochs=epochs, batch_size=64, verbose=0)
        elbo, iwae = model.bounds(test, args.draws)
        weights = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(f"{kind:<10} {weights:8d} {elbo:10.2f} {iwae:10.2f}")
    path = os.path.join(args.out, "samples.png")
    save_samples(model, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
