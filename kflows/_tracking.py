"""Keeping list-held weights and layers visible to ``tf.train.Checkpoint``."""

from __future__ import annotations


def track_items(owner, name: str, items) -> None:
    """Sets ``owner.<name>_<i>`` for each item, so ``tf.train.Checkpoint`` finds them.

    Keras 3 tracks a list attribute in its own wrapper, which is not a TensorFlow trackable:
    a ``tf.train.Checkpoint`` of the owner then writes none of the list's weights, and
    restoring "succeeds" while nothing changes. One attribute per item is tracked by both
    Keras (which de-duplicates) and TensorFlow.
    """
    for i, item in enumerate(items):
        setattr(owner, f"{name}_{i}", item)
