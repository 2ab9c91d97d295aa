"""Sphinx extension for the book's pages (loaded from ``_config.yml``, ``sphinx.local_extensions``).

- Warns when a chapter or appendix under ``book/`` is missing from ``_toc.yml``: with
  ``only_build_toc_files`` Sphinx would silently leave it out (the strict build turns the warning into
  a failure).
- Adds the book's CSS (``book/_vendor/assocmem.css``: scrolling equations and tables, wrapped code).
- Drops scripts that extensions add twice to a page (``const THEBE_JS_URL`` declared twice is a
  console error).
- Starts pages in light mode (the theme logs "invalid theme mode" when none is set).
- The ``experiments`` directive: every registered experiment of ``assocmem.sweep``, with its
  parameters, defaults and docstring (the API appendix's *Registered experiments*).
"""

from __future__ import annotations

import fnmatch
import inspect
from pathlib import Path

import yaml
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# Folders under book/ whose files are not pages of the book.
NOT_PAGES = {"twins", "_vendor", "_ext", "_build"}


def missing_from_toc(root: Path) -> list[str]:
    """Pages (``book/**/*.ipynb``, ``book/**/*.md``) that ``_toc.yml`` does not list, as ``book/NAME``."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    listed, globs = {toc["root"]}, []
    stack = [toc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "file" in node:
                listed.add(str(node["file"]))
            if "glob" in node:
                globs.append(str(node["glob"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    listed = {name.removesuffix(".md").removesuffix(".ipynb") for name in listed}
    pages = set()
    for path in (root / "book").rglob("*"):
        relative = path.relative_to(root)
        if path.suffix not in {".md", ".ipynb"} or NOT_PAGES & set(relative.parts[:-1]):
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        pages.add(str(relative.with_suffix("")))
    return sorted(p for p in pages - listed if not any(fnmatch.fnmatch(p, g) for g in globs))


def _check_toc(app, config) -> None:
    root = Path(app.confdir)
    if not (root / "_toc.yml").is_file():
        return
    for page in missing_from_toc(root):
        logger.warning(f"{page} is not in _toc.yml, so the book leaves it out: add "
                       f"'- file: {page}' under the right part of _toc.yml")


def _light_mode(app, config) -> None:
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "light")
    config.html_context = context


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # the same inline script may come once with filename None and once with ''
        key = (str(getattr(script, "filename", script) or ""),
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


class ExperimentsDirective(SphinxDirective):
    """Document every registered experiment: name, function, parameters with defaults, docstring."""

    def run(self):
        from sphinx.ext.napoleon.docstring import NumpyDocstring

        from assocmem.sweep import experiments

        sections = []
        for name, exp in experiments().items():
            fn = exp.fn
            params = ", ".join(f"{key}={value!r}" for key, value in exp.defaults.items())
            body = NumpyDocstring(inspect.cleandoc(exp.doc or ""), self.config, what="function").lines()
            lines = [f"``python -m assocmem run {name}`` runs :func:`{fn.__module__}.{fn.__name__}`"
                     f" (cache version {exp.version}).", "",
                     f".. py:function:: {fn.__name__}({params})", f"   :module: {fn.__module__}", "",
                     *(f"   {line}" if line else "" for line in body), ""]
            section = nodes.section(ids=[f"experiment-{name.replace('_', '-')}"])
            section += nodes.title(text=name)
            self.state.nested_parse(StringList(lines, source=f"experiment {name}"), self.content_offset,
                                    section)
            sections.append(section)
        return sections


def setup(app):
    app.connect("config-inited", _check_toc)
    app.connect("config-inited", _light_mode)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    app.add_css_file("assocmem.css")
    app.add_directive("experiments", ExperimentsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
