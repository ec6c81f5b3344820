"""Saving and loading flows: the Keras v3 ``.keras`` format only, with clear errors.

A :class:`~kflows.Flow` saves with ``flow.save("model.keras")`` and loads with
:func:`load`. The legacy HDF5 format is refused: Keras writes a ``.h5`` file for a Flow but
cannot read it back (``Unknown layer: 'Flow'``). For the weights alone use
``flow.save_weights("model.weights.h5")``.

This module imports Keras only inside :func:`load`, so checking a path is cheap.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kflows.flow import Flow

SUFFIX = ".keras"


def _path(filepath) -> str:
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(
            f"Expected a file path (str or os.PathLike); got {type(filepath).__name__}: "
            f"{filepath!r}."
        )
    return os.fsdecode(os.fspath(filepath))


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_save_path(filepath) -> str:
    """Returns ``filepath`` as a ``str`` if a Flow can be saved there (a ``.keras`` file).

    Args:
        filepath: where ``Flow.save`` is asked to write.

    Returns:
        The path as a ``str``.

    Raises:
        TypeError: ``filepath`` is not a ``str`` or ``os.PathLike``.
        ValueError: ``filepath`` does not end in ``.keras``.

    Example:
        >>> check_save_path("model.keras")
        'model.keras'
    """
    path = _path(filepath)
    if not path.endswith(SUFFIX):
        raise ValueError(
            f"A kflows Flow saves only in the Keras v3 '{SUFFIX}' format; got {path!r}. "
            "For the weights only use save_weights('x.weights.h5')."
        )
    return path


def _read_config(path: str) -> dict:
    """The ``config.json`` of the ``.keras`` archive (or unzipped directory) at ``path``."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Expected a {SUFFIX} file saved by Flow.save; no file at {path!r}."
        )
    if not path.endswith(SUFFIX):
        hint = (
            " HDF5 files do not restore a kflows Flow; save it with flow.save('model.keras')."
            if path.endswith((".h5", ".hdf5"))
            else ""
        )
        raise ValueError(
            f"Expected a Keras v3 '{SUFFIX}' file saved by Flow.save; got {path!r}.{hint}"
        )
    if os.path.isdir(path):  # Keras' unzipped format: save(..., zipped=False)
        config = os.path.join(path, "config.json")
        if not os.path.isfile(config):
            raise ValueError(
                f"{path!r} is a directory without a config.json, not a {SUFFIX} model."
            )
        with open(config, "rb") as f:
            raw = f.read()
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()  # reads every member and checks its CRC
                if bad is not None:
                    raise zipfile.BadZipFile(f"bad CRC in {bad!r}")
                names = archive.namelist()
                if "config.json" not in names:
                    raise ValueError(
                        f"{path!r} is not a valid {SUFFIX} file: the archive has no config.json "
                        f"(it holds {names[:5]})."
                    )
                raw = archive.read("config.json")
        except (zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise ValueError(
                f"{path!r} is not a valid {SUFFIX} file (truncated or corrupt: {_one_line(err)})."
            ) from err
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise ValueError(
            f"{path!r} is not a valid {SUFFIX} file: "
            f"its config.json is not JSON ({_one_line(err)})."
        ) from err
    if not isinstance(config, dict):
        raise ValueError(
            f"{path!r} is not a valid {SUFFIX} file: its config.json is not an object."
        )
    return config


def load(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True) -> Flow:
    """Loads a :class:`~kflows.Flow` saved with ``flow.save("model.keras")``.

    The file is checked first, and every failure becomes one error that names the file and
    what is wrong with it.

    Args:
        filepath: a ``.keras`` file (or a directory saved with ``zipped=False``).
        custom_objects: classes the model uses that are not registered with Keras.
        compile: restore the optimizer and compile the flow, as ``keras.models.load_model``.
        safe_mode: refuse to deserialize lambdas, as ``keras.models.load_model``.

    Returns:
        The flow, with its weights (and its optimizer state when ``compile``).

    Raises:
        FileNotFoundError: no file at ``filepath``.
        ValueError: the file is not a ``.keras`` file, is truncated or corrupt, cannot be
            deserialized, or holds a model that is not a kflows Flow.

    Example:
        >>> kflows.maf(num_layers=1, event_dim=2).save("model.keras")
        >>> flow = kflows.load("model.keras")  # kflows.load is this function
        >>> flow.event_dim
        2
    """
    path = _path(filepath)
    config = _read_config(path)
    holds = config.get("registered_name") or config.get("class_name") or "an unknown object"

    import keras

    # Importing these registers every kflows class with Keras, even if kflows/__init__.py
    # imports its submodules lazily.
    from kflows import bases, layers, networks, transforms  # noqa: F401
    from kflows.flow import Flow

    try:
        model = keras.models.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except Exception as err:  # Keras raises many types for a file it cannot restore
        raise ValueError(
            f"Could not load {path!r} (it holds {holds}) as a kflows Flow: {_one_line(err)}"
        ) from err
    if not isinstance(model, Flow):
        raise ValueError(f"Expected a kflows Flow in {path!r}; it holds a {type(model).__name__}.")
    return model
