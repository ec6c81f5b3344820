"""Every ``>>>`` example in kflows' docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import kflows

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(kflows.__path__, prefix="kflows.")
    if name not in ("kflows.cli",)  # imports lazily for speed; its examples are shell
)
GLOBALS = {"kflows": kflows, "np": np, "tf": tf, "tfp": tfp, "tfb": tfp.bijectors}


def test_every_module_is_collected():
    assert {"kflows.flow", "kflows.builders", "kflows.layers.coupling"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    module = importlib.import_module(name)
    globs = {**GLOBALS, **vars(module), **GLOBALS, "data": kflows.data}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name, globs=globs) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
