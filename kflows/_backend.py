"""Fail early, with a clear message, when Keras does not run on TensorFlow."""

import os

_backend = os.environ.get("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        "kflows needs the TensorFlow backend of Keras 3; "
        f"got KERAS_BACKEND={_backend!r}. Unset it or set KERAS_BACKEND=tensorflow."
    )

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "kflows needs the TensorFlow backend of Keras 3; "
        f"keras.backend.backend() is {keras.backend.backend()!r}. "
        "Set KERAS_BACKEND=tensorflow before importing keras."
    )
