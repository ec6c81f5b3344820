"""The one place that knows which TensorFlow Probability releases kflows supports.

kflows' bijectors use TFP's public ``tfb.Bijector`` API only (no
``tensorflow_probability.python.internal``, no private members), so this module holds no
shims today; if one is ever needed, it goes here and nowhere else.
"""

from __future__ import annotations

import re
import warnings

import tensorflow_probability as tfp

#: The TFP ``(major, minor)`` releases kflows is tested with (``pyproject.toml`` pins the same).
SUPPORTED_TFP = ((0, 25),)


def check_tfp_version(version: str) -> None:
    """Raises for a TFP older than the supported releases; warns for a newer one.

    An older TFP fails: it does not run on the TensorFlow 2.18+ and Keras 3 that kflows
    needs, and its errors would come from deep inside TFP. A newer TFP only warns: kflows
    relies on the public ``tfb.Bijector`` API and its documented hooks, and where a newer
    TFP changed the order in which ``TransformedDistribution`` calls them, the one-pass
    bijectors fall back to a fresh pass (slower, never wrong). Refusing to import would
    block users on a release that most likely works.

    Args:
        version: a TFP version string such as ``"0.25.0"`` or ``"0.26.0-dev20250101"``.

    Raises:
        ImportError: if ``version`` cannot be read or is older than the supported releases.
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ImportError(
            f"kflows expected a TensorFlow Probability version like '0.25.0'; got {version!r}."
        )
    found = (int(match.group(1)), int(match.group(2)))
    supported = ", ".join(f"{major}.{minor}.x" for major, minor in SUPPORTED_TFP)
    if found < min(SUPPORTED_TFP):
        raise ImportError(
            f"kflows needs TensorFlow Probability {supported}; got {version}. "
            "Run: pip install 'tensorflow-probability>=0.25,<0.26'."
        )
    if found > max(SUPPORTED_TFP):
        warnings.warn(
            f"kflows is tested with TensorFlow Probability {supported}; got {version}. "
            "It uses TFP's public API only, but report anything that breaks.",
            stacklevel=2,
        )


check_tfp_version(tfp.__version__)
