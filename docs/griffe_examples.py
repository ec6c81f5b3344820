"""A griffe extension for the API reference: kflows' docstrings as Markdown sees them.

kflows' docstrings follow the Google style with two habits griffe reads differently:

- ``Example:`` (singular) heads the runnable examples; griffe's Google parser makes only
  ``Examples:`` an examples section (rendered as Python code) and turns ``Example:`` into
  an admonition of Markdown, where ``>>>`` starts a block quote. It is renamed here.
- Sphinx roles (``:class:`~kflows.Flow```) would show as literal text; they become code
  spans of the name (the last part of the path with ``~``, the full path without).

The docstrings themselves run as doctests (tests/test_doctests.py) and are not changed.
"""

from __future__ import annotations

import re

import griffe

EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.M)
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(?P<short>~)?(?P<path>[\w.]+)`")


def markdown_docstring(text: str) -> str:
    """``text`` with ``Example:`` sections renamed and Sphinx roles made code spans."""
    text = EXAMPLE.sub(lambda m: f"{m['indent']}Examples:", text)
    return ROLE.sub(
        lambda m: f"`{m['path'].rsplit('.', 1)[-1] if m['short'] else m['path']}`", text
    )


class ExampleSections(griffe.Extension):
    """Rewrites every loaded docstring with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
