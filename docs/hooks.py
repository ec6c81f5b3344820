"""MkDocs hooks: everything on the site that code makes is made when the site is built.

Markers a page may hold, each on a line of its own:

- ``<!-- kflows:example examples/NAME.py -->`` runs ``python examples/NAME.py --quick`` in a
  fresh folder and puts in its place what the example printed and every figure it saved.
- ``<!-- kflows:cli -->`` becomes ``kflows --help`` and ``kflows COMMAND --help`` for every
  command the CLI lists.

Every ``python`` and ``bash`` block of every page runs too: a page's blocks in order, in one
namespace and a fresh folder, and what a block prints is shown under it. A block that
cannot run says why on the line above it (``<!-- not run: why -->``); a block that holds
only a snippet include (``--8<-- "examples/NAME.py"``) shows an example that its marker runs.

The examples, the blocks and the CLI help run in subprocesses, two at a time, started when
the build starts. Any failure stops the build with a ``PluginError`` (never a warning).

Maths written for ``pymdownx.arithmatex`` (generic mode) is turned into MathML here, so the
pages need no JavaScript and nothing from the network to show it.

``python docs/hooks.py MANIFEST RESULT`` is the block runner (run by the hooks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A fenced block at the start of a line, with the optional "not run" reason above it.
FENCE = re.compile(
    r"(?:^<!-- not run: (?P<why>.+?) -->\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$",
    re.S | re.M,
)
EXAMPLE = re.compile(r"^<!-- kflows:example (?P<path>examples/\w+\.py) -->[ \t]*$", re.M)
CLI = re.compile(r"^<!-- kflows:cli -->[ \t]*$", re.M)
RUNNABLE = ("python", "bash")
#: How the console script ``kflows`` starts (``[project.scripts]`` in pyproject.toml).
CLI_MAIN = "import sys; from kflows.cli import main; sys.exit(main())"
TIMEOUT = 900  # seconds, for any one subprocess
FIGURES = "figures"  # where an example's figures go in the site: figures/NAME/FILE
LOG = logging.getLogger("mkdocs.plugins.kflows")


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of a page: its language, code, "not run" reason and position."""

    lang: str
    code: str
    why: str | None
    line: int
    end: int  # offset just after the closing fence

    @property
    def runs(self) -> bool:
        """Whether the build runs it (a snippet include is shown, its example runs)."""
        return (
            self.lang in RUNNABLE
            and self.why is None
            and not self.code.lstrip().startswith("--8<--")
        )


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of a page, in order."""
    return [
        Block(m["lang"], m["code"], m["why"], markdown.count("\n", 0, m.start("code")) + 1, m.end())
        for m in FENCE.finditer(markdown)
    ]


def examples(markdown: str) -> list[str]:
    """The example scripts a page runs (paths relative to the repository)."""
    return EXAMPLE.findall(markdown)


def pages(docs_dir: Path) -> dict[str, str]:
    """Every Markdown page under ``docs_dir``: its path (POSIX, relative) -> its text."""
    return {
        p.relative_to(docs_dir).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(docs_dir.rglob("*.md"))
    }


def environment(extra_path: str | None = None) -> dict[str, str]:
    """The subprocesses' environment: this checkout's kflows first, unbuffered, no display."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if extra_path:
        env["PATH"] = os.pathsep.join([extra_path, env.get("PATH", "")])
    return env


def relative_to(printed: str, folder) -> str:
    """``printed`` with the paths under ``folder`` (a temporary folder) made relative to it."""
    return printed.replace(f"{folder}{os.sep}", "").replace(str(folder), ".")


def run(args: list[str], cwd: Path, what: str) -> str:
    """Runs ``args``; returns stdout, or raises ``RuntimeError`` with the tail of the output."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            args, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{what} ran past {TIMEOUT} s") from err
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} exited with status {done.returncode}.\n--- stdout (end) ---\n"
            f"{done.stdout[-3000:]}\n--- stderr (end) ---\n{done.stderr[-5000:]}"
        )
    LOG.info("kflows docs: %s took %.0f s", what, time.perf_counter() - start)
    return done.stdout


# ---------------------------------------------------------------- the jobs of one build
class Build:
    """The subprocesses of one build: examples, page blocks and CLI help."""

    def __init__(self, docs_dir: Path):
        self.started = time.perf_counter()
        self.folder = Path(tempfile.mkdtemp(prefix="kflows-docs-"))
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.texts = pages(docs_dir)
        wanted = sorted({path for text in self.texts.values() for path in examples(text)})
        # The block runner first: it is the longest job.
        self.blocks = self.pool.submit(self._run_blocks)
        self.examples: dict[str, Future] = {
            path: self.pool.submit(self._run_example, path) for path in wanted
        }
        self.cli = (
            self.pool.submit(self._cli_help)
            if any(CLI.search(text) for text in self.texts.values())
            else None
        )

    def _run_example(self, path: str) -> tuple[str, list[Path]]:
        script = ROOT / path
        if not script.is_file():
            raise RuntimeError(f"no example {path} (a kflows:example marker names it)")
        cwd = self.folder / "examples" / script.stem
        cwd.mkdir(parents=True)
        out = run([sys.executable, str(script), "--quick"], cwd, f"{path} --quick")
        return relative_to(out, cwd), sorted(cwd.rglob("*.png"))

    def _run_blocks(self) -> dict[str, list[str]]:
        manifest = {
            page: [dataclasses.asdict(b) for b in blocks(text) if b.runs]
            for page, text in self.texts.items()
        }
        manifest = {page: found for page, found in manifest.items() if found}
        cwd = self.folder / "blocks"
        cwd.mkdir()
        (cwd / "manifest.json").write_text(json.dumps(manifest))
        count = sum(len(found) for found in manifest.values())
        run(
            [sys.executable, __file__, "manifest.json", "result.json"],
            cwd,
            f"the {count} code blocks of {len(manifest)} pages",
        )
        result = json.loads((cwd / "result.json").read_text())
        for page, seconds in result["seconds"].items():
            LOG.info("kflows docs: the blocks of %s took %.0f s", page, seconds)
        return result["outputs"]

    def _cli_help(self) -> list[tuple[str, str]]:
        def help_of(*command):
            return run(
                [sys.executable, "-c", CLI_MAIN, *command, "--help"],
                self.folder,
                f"kflows {' '.join(command)} --help".replace("  ", " "),
            )

        top = help_of()
        found = re.search(r"\{([\w,-]+)\}", top)
        if found is None:
            raise RuntimeError(f"kflows --help lists no commands in braces:\n{top}")
        commands = found[1].split(",")
        return [("kflows", top)] + [(f"kflows {c}", help_of(c)) for c in commands]

    def result(self, future: Future, what: str):
        try:
            return future.result()
        except Exception as err:
            fail(f"{what} failed: {err}")

    def close(self):
        if self.pool is None:
            return
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = None
        shutil.rmtree(self.folder, ignore_errors=True)
        LOG.info("kflows docs: hooks done in %.0f s", time.perf_counter() - self.started)


BUILD: Build | None = None


def fail(message: str):
    """Stops the build: MkDocs reports a ``PluginError`` as an error, never as a warning."""
    from mkdocs.exceptions import PluginError

    raise PluginError(f"kflows docs: {message}")


def on_pre_build(config):
    global BUILD
    if BUILD is not None:  # a rebuild under `mkdocs serve`
        BUILD.close()
    BUILD = Build(Path(config["docs_dir"]))


def on_files(files, config):
    """Registers every figure the examples saved as a file of the site."""
    from mkdocs.structure.files import File

    for path, future in BUILD.examples.items():
        _, figures = BUILD.result(future, path)
        for figure in figures:
            uri = posixpath.join(FIGURES, Path(path).stem, figure.name)
            if files.get_file_from_path(uri) is not None:
                fail(f"{path} saved two figures named {figure.name}")
            files.append(File.generated(config, uri, abs_src_path=str(figure)))
    return files


def on_page_markdown(markdown, page, config, files):
    """Puts the output of the page's blocks, examples and CLI help into its Markdown."""
    uri = page.file.src_uri
    outputs = BUILD.result(BUILD.blocks, "running the pages' code blocks").get(uri, [])
    runnable = [b for b in blocks(markdown) if b.runs]
    if len(runnable) != len(outputs):
        fail(f"{uri}: {len(runnable)} blocks to show, {len(outputs)} ran")
    # From the end, so that the offsets of the earlier blocks stay valid.
    for block, printed in reversed(list(zip(runnable, outputs, strict=True))):
        if printed.strip():
            shown = f'\n\n```text title="Output"\n{printed.rstrip()}\n```\n'
            markdown = markdown[: block.end] + shown + markdown[block.end :]

    def example(match):
        path = match["path"]
        printed, figures = BUILD.result(BUILD.examples[path], path)
        links = [posixpath.join(FIGURES, Path(path).stem, f.name) for f in figures]
        images = "".join(
            f"\n![{posixpath.basename(link)}]({posixpath.relpath(link, posixpath.dirname(uri))})\n"
            for link in links
        )
        return (
            f"Output of `python {path} --quick` (small CI sizes), run when this page was "
            f'built:\n\n```text title="{path} --quick"\n{printed.rstrip()}\n```\n{images}'
        )

    markdown = EXAMPLE.sub(example, markdown)
    if CLI.search(markdown):
        helps = BUILD.result(BUILD.cli, "kflows --help")
        text = "\n".join(f"## `{name}`\n\n```text\n{out.rstrip()}\n```\n" for name, out in helps)
        markdown = CLI.sub(lambda _: text, markdown)
    return markdown


# ---------------------------------------------------------------- maths as MathML
MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])</(?P=tag)>",
    re.S,
)


def on_page_content(content, page, config, files):
    """Converts arithmatex's TeX to MathML; unknown TeX fails the build."""
    from latex2mathml.converter import convert

    def mathml(match):
        tex = html.unescape(match["inline"] if match["inline"] is not None else match["block"])
        display = "inline" if match["inline"] is not None else "block"
        # latex2mathml writes \sim as the letter "~"; it is the relation "∼" (U+223C).
        out = convert(tex.strip(), display=display).replace(
            "<mi>&#x0007E;</mi>", "<mo>&#x0223C;</mo>"
        )
        if "\\" in out:  # latex2mathml passes unknown commands through as text
            fail(f"{page.file.src_uri}: unsupported TeX in ${tex}$")
        return out if display == "inline" else f'<div class="math">{out}</div>'

    return MATH.sub(mathml, content)


def on_post_build(config):
    BUILD.close()


def on_build_error(error):
    if BUILD is not None:
        BUILD.close()


# ---------------------------------------------------------------- the block runner
def _command_shims(folder: Path) -> str:
    """A ``kflows`` command on PATH that runs this interpreter's kflows.cli (as installed)."""
    folder.mkdir(exist_ok=True)
    shim = folder / "kflows"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{CLI_MAIN}" "$@"\n')
    shim.chmod(0o755)
    return str(folder)


def run_blocks(manifest: str, result) -> int:
    """Runs every page's blocks (python in-process, bash in a shell); writes their stdout."""
    import keras

    pages_blocks = json.loads(Path(manifest).read_text())
    result = Path(result).resolve()  # before the pages change the working folder
    shims = _command_shims(result.parent / "bin")
    outputs: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for page, found in pages_blocks.items():
        start = time.perf_counter()
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        namespace = {"__name__": "__main__"}
        folder = tempfile.mkdtemp(prefix="page-")
        os.chdir(folder)
        outputs[page] = []
        for block in found:
            where = f"docs/{page}, the {block['lang']} block at line {block['line']}"
            if block["lang"] == "python":
                printed = io.StringIO()
                try:
                    with contextlib.redirect_stdout(printed):
                        exec(compile(block["code"], where, "exec"), namespace)
                except BaseException:
                    print(f"{where} failed:\n{traceback.format_exc()}", file=sys.stderr)
                    return 1
                outputs[page].append(relative_to(printed.getvalue(), folder))
            else:
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", block["code"]],
                    env=environment(shims),
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT,
                )
                if done.returncode != 0:
                    failure = f"{where} exited with {done.returncode}:\n{done.stdout}\n"
                    print(failure + done.stderr[-5000:], file=sys.stderr)
                    return 1
                outputs[page].append(relative_to(done.stdout, folder))
        seconds[page] = time.perf_counter() - start
    result.write_text(json.dumps({"outputs": outputs, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(run_blocks(*sys.argv[1:]))
