"""Saving and loading flows: the .keras format only, and one clear error per bad file."""

import pathlib
import zipfile

import keras
import numpy as np
import pytest
from helpers import perturb

import kflows
from kflows import saving

X = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small perturbed flow and the .keras file it was saved to."""
    keras.utils.set_random_seed(0)
    flow = kflows.maf(num_layers=2, hidden_units=(4,), event_dim=2)
    perturb(flow)
    path = tmp_path_factory.mktemp("saving") / "flow.keras"
    flow.save(str(path))
    return flow, path


def test_round_trip_gives_identical_log_prob(saved):
    flow, path = saved
    loaded = saving.load(path)
    assert isinstance(loaded, kflows.Flow) and loaded.event_dim == 2
    np.testing.assert_array_equal(loaded.log_prob(X).numpy(), flow.log_prob(X).numpy())


def test_round_trip_of_a_trained_glow(tmp_path):
    # ActNorm's data initialisation and the optimizer state travel with the file.
    flow = kflows.glow(num_layers=1, hidden_units=(4,), event_dim=2)
    flow.compile()
    flow.fit(X, epochs=1, batch_size=8, verbose=0)
    flow.save(str(tmp_path / "glow.keras"))
    loaded = saving.load(str(tmp_path / "glow.keras"))
    assert not loaded.needs_data_init
    np.testing.assert_array_equal(loaded.log_prob(X).numpy(), flow.log_prob(X).numpy())


def _truncated(path, saved_path):
    data = saved_path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path, _):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _empty(path, _):
    path.write_bytes(b"")


def _zip_without_config(path, _):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.weights.h5", b"weights")


def _zip_with_bad_config(path, _):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", b"{not json")


def _plain_keras_model(path, _):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.save(str(path))


def _unknown_class(path, saved_path):
    # A .keras file whose model class is not registered: Keras cannot deserialize it.
    with zipfile.ZipFile(saved_path) as source, zipfile.ZipFile(path, "w") as archive:
        for name in source.namelist():
            content = source.read(name)
            if name == "config.json":
                content = content.replace(b'"kflows>Flow"', b'"elsewhere>Gone"')
                content = content.replace(b'"Flow"', b'"Gone"')
            archive.writestr(name, content)


@pytest.mark.parametrize(
    "name, make, error, message",
    [
        ("truncated.keras", _truncated, ValueError, r"not a valid \.keras file \(truncated or"),
        ("random.keras", _random_bytes, ValueError, r"not a valid \.keras file \(truncated or"),
        ("empty.keras", _empty, ValueError, r"not a valid \.keras file \(truncated or"),
        ("missing.keras", None, FileNotFoundError, "no file at"),
        ("noconfig.keras", _zip_without_config, ValueError, "has no config.json"),
        ("badconfig.keras", _zip_with_bad_config, ValueError, "config.json is not JSON"),
        ("plain.keras", _plain_keras_model, ValueError, "Expected a kflows Flow.*Sequential"),
        ("unknown.keras", _unknown_class, ValueError, "Could not load .*elsewhere>Gone"),
        ("flow.h5", _random_bytes, ValueError, r"Expected a Keras v3 '\.keras' file.*HDF5"),
    ],
)
def test_every_bad_file_gives_one_clear_error_naming_it(
    tmp_path, saved, name, make, error, message
):
    path = tmp_path / name
    if make is not None:
        make(path, saved[1])
    with pytest.raises(error, match=message) as info:
        saving.load(str(path))
    text = str(info.value)
    assert repr(str(path)) in text and "\n" not in text


def test_a_directory_is_not_a_model(tmp_path):
    (tmp_path / "model.keras").mkdir()
    with pytest.raises(ValueError, match="directory without a config.json"):
        saving.load(tmp_path / "model.keras")


@pytest.mark.parametrize("path", ["m.keras", pathlib.Path("dir/m.keras")])
def test_check_save_path_accepts_keras_files(path):
    assert saving.check_save_path(path) == str(path)


@pytest.mark.parametrize("path", ["f.h5", "f.hdf5", "f", "f.weights.h5", "f.keras.bak"])
def test_check_save_path_refuses_other_formats(path):
    with pytest.raises(ValueError, match=rf"only in the Keras v3 '\.keras' format; got '{path}'"):
        saving.check_save_path(path)


def test_check_save_path_refuses_non_paths():
    with pytest.raises(TypeError, match="Expected a file path"):
        saving.check_save_path(3)


def test_flow_save_refuses_h5(tmp_path, saved):
    flow, _ = saved
    with pytest.raises(ValueError, match=r"\.keras"):
        flow.save(str(tmp_path / "f.h5"))
    assert not (tmp_path / "f.h5").exists()
