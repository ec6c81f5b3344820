"""Static checks of examples/: each says what it does and has a --quick mode for CI.

The examples themselves run (with ``--quick``) when the documentation site is built
(``mkdocs build``, see docs/hooks.py), which embeds their output in the tutorials; they are
not run again here, to keep the test suite fast.
"""

import ast
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
EXAMPLES = sorted(n for n in os.listdir(os.path.join(ROOT, "examples")) if n.endswith(".py"))


def parse(name):
    with open(os.path.join(ROOT, "examples", name), encoding="utf-8") as f:
        return ast.parse(f.read(), name)


def options(tree):
    """The option strings passed to ``add_argument`` anywhere in the module."""
    return {
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    }


def test_the_examples_are_there():
    assert {
        "two_moons.py",
        "compare.py",
        "tabular_density.py",
        "conditional_density.py",
        "variational_inference.py",
        "neutra_hmc.py",
        "vae.py",
        "serving.py",
    } <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_has_a_docstring_usage_a_quick_mode_and_a_main_guard(name):
    tree = parse(name)
    doc = ast.get_docstring(tree)
    assert doc and len(doc.splitlines()[0]) <= 100, "a one-line summary first"
    usage = doc[doc.index("Usage:") :]  # a Usage section naming the script and --quick
    assert f"python examples/{name}" in usage and "--quick" in usage
    assert "--quick" in options(tree)
    assert any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
    ), "runs only as a script"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_writes_under_its_out_folder(name):
    # Outputs go to a folder the user can move (--out), never to a fixed absolute path.
    tree = parse(name)
    if "makedirs" in ast.unparse(tree):  # compare.py only prints
        assert "--out" in options(tree)
    constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert not [c for c in constants if isinstance(c, str) and c.startswith("/")]
