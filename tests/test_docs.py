"""Cheap checks of the documentation site; `mkdocs build` runs its code (see docs/hooks.py).

The build runs every example (``--quick``) and every python and bash block of the pages,
and fails on any error or warning. These tests check, in seconds, what the build cannot:
that nothing escapes it (every page is in the nav, every block either runs or says why
not, every example is run by a page, every public name is in the API reference).
"""

import ast
import importlib.util
import json
import os
import re
import sys

import pytest

import kflows

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
DOCS = os.path.join(ROOT, "docs")
MKDOCS = os.path.join(ROOT, "mkdocs.yml")


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", os.path.join(DOCS, "hooks.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)  # mkdocs itself is imported only inside the hooks
    return module


hooks = _load_hooks()
PAGES = hooks.pages(hooks.Path(DOCS))
CONFIG = open(MKDOCS, encoding="utf-8").read()
#: Blocks the build shows but does not run, each with its reason on the line above.
NOT_RUN = {
    ("getting-started.md", "bash"),  # pip install
    ("guides/serving.md", "bash"),  # docker run and curl: a TF Serving server
    ("guides/serving.md", "python"),  # gRPC: a TF Serving server
}


def nav_pages():
    """The pages the nav of mkdocs.yml lists (``- Title: path.md`` or ``- path.md``)."""
    nav = CONFIG[CONFIG.index("\nnav:") :]
    return re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)\s*$", nav, re.M)


def test_the_nav_and_the_pages_match():
    listed = nav_pages()
    assert len(listed) == len(set(listed)), "a page is listed twice"
    assert sorted(listed) == sorted(PAGES), "every page in the nav, every nav entry a page"
    assert len(listed) >= 30


def test_the_site_builds_strict_offline_and_runs_the_hooks():
    for line in ("strict: true", "font: false", "- docs/hooks.py", "generic: true"):
        assert line in CONFIG, line
    # The theme loads nothing from the network: no CDN scripts or stylesheets.
    assert "http" not in CONFIG.split("\nnav:")[0].replace("https://www.tensorflow.org", "")


def test_every_code_block_runs_at_build_time_or_says_why_not():
    not_run, languages = set(), set()
    for page, text in PAGES.items():
        # The runner only sees fences at the start of a line: none may hide indented.
        assert not re.search(r"^[ \t]+```", text, re.M), f"{page}: an indented code fence"
        for block in hooks.blocks(text):
            languages.add(block.lang)
            if block.lang in hooks.RUNNABLE and not block.runs:
                if block.why is not None:
                    not_run.add((page, block.lang))
                else:  # a snippet include: the example it shows must run on this page
                    path = re.search(r'--8<-- "(.+?)"', block.code)[1]
                    assert path in hooks.examples(text), f"{page} shows {path} but never runs it"
    assert not_run == NOT_RUN
    assert languages <= {"python", "bash", "json", "text"}, languages


def test_pages_read_well_in_the_theme():
    for page, text in PAGES.items():
        # The table of contents shows a heading's TeX as it is: no maths in headings.
        assert not re.search(r"^#+ .*\$", text, re.M), f"{page}: maths in a heading"
        for block in hooks.blocks(text):  # wider code scrolls sideways in the theme
            long = [line for line in block.code.splitlines() if len(line) > 92]
            assert not long, f"{page}, block at line {block.line}: {long}"


def test_python_blocks_that_do_not_run_compile_and_import():
    count = 0
    for page, text in PAGES.items():
        for block in hooks.blocks(text):
            if block.lang == "python" and block.why is not None:
                tree = ast.parse(block.code, f"{page}:{block.line}")
                imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
                exec(compile(ast.Module(imports, type_ignores=[]), page, "exec"), {})
                count += 1
    assert count == 1  # the gRPC client: it needs a running TF Serving server


def test_json_blocks_are_valid_json():
    count = 0
    for page, text in PAGES.items():
        for block in hooks.blocks(text):
            if block.lang == "json":
                try:
                    json.loads(block.code)
                except ValueError as err:
                    pytest.fail(f"{page}, line {block.line}: {err}")
                count += 1
    assert count >= 2


def test_every_example_runs_in_the_build_and_snippets_exist():
    examples = sorted(
        f"examples/{name}"
        for name in os.listdir(os.path.join(ROOT, "examples"))
        if name.endswith(".py")
    )
    run = {path for text in PAGES.values() for path in hooks.examples(text)}
    # compare.py trains 10 models (minutes): the benchmarks page describes it instead.
    assert run == set(examples) - {"examples/compare.py"}
    for page, text in PAGES.items():
        for path in re.findall(r'--8<-- "(.+?)"', text):
            assert os.path.isfile(os.path.join(ROOT, path)), f"{page} includes {path}"


def test_the_api_reference_covers_the_public_api():
    documented = {
        line.split()[1] for text in PAGES.values() for line in re.findall(r"^::: \S+", text, re.M)
    }
    for identifier in documented:  # each resolves, as mkdocstrings will need
        module, _, name = identifier.rpartition(".")
        target = importlib.import_module(module) if module else None
        assert hasattr(target, name) or importlib.util.find_spec(identifier), identifier
    # A module page (``::: kflows.networks``) renders what its ``__all__`` exports.
    modules = [importlib.import_module(i) for i in documented if importlib.util.find_spec(i)]
    exported = {name for module in modules for name in getattr(module, "__all__", ())}
    missing = [
        name
        for name in kflows.__all__
        if f"kflows.{name}" not in documented and name not in exported
    ]
    assert not missing, f"not in the API reference: {missing}"


def test_block_parser_reads_reasons_languages_and_snippets():
    text = (
        "<!-- not run: needs a server -->\n```bash\ncurl x\n```\n\n"
        '```python title="t"\nprint(1)\n```\n\n```python\n--8<-- "examples/vae.py"\n```\n'
        "<!-- kflows:example examples/vae.py -->\n"
    )
    found = hooks.blocks(text)
    assert [(b.lang, b.why, b.runs, b.line) for b in found] == [
        ("bash", "needs a server", False, 3),
        ("python", None, True, 7),
        ("python", None, False, 11),
    ]
    assert hooks.examples(text) == ["examples/vae.py"]


def test_maths_become_mathml_and_unknown_tex_fails_the_build():
    pytest.importorskip("latex2mathml")
    pytest.importorskip("mkdocs")
    from mkdocs.exceptions import PluginError

    page = type("Page", (), {"file": type("File", (), {"src_uri": "x.md"})()})()
    html = (
        '<p><span class="arithmatex">\\(x = T(u)\\)</span></p>'
        '<div class="arithmatex">\\[\\log p(x) &lt; 0\\]</div>'
    )
    out = hooks.on_page_content(html, page, None, None)
    assert out.count("<math") == 2 and "arithmatex" not in out and "&lt;" not in out
    with pytest.raises(PluginError, match="unsupported TeX"):
        hooks.on_page_content('<span class="arithmatex">\\(\\nosuch x\\)</span>', page, None, None)
