"""Checks of the book itself: twins in sync, environments in step, the TOC, the strict build, and a
headless browser that opens the built chapters and finds rendered math, figures and widgets.

nbval's re-execution of every chapter runs in the same pytest call (`make test`)."""

import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.book


def _load_tool():
    spec = importlib.util.spec_from_file_location("notebooks_tool", ROOT / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_chapters():
    assert [p.stem[:2] for p in CHAPTERS] == [f"{i:02d}" for i in range(1, len(CHAPTERS) + 1)]


def test_twins_are_in_sync():
    assert _load_tool().out_of_sync() == []


def test_environment_yml_is_in_step_with_requirements():
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [p for p in pip_section if p != "-e ."] == pins
    assert "python=3.11" in env["dependencies"]
    assert pins[0] == "torch==2.13.0", "torch must come first (the CPU build on these machines)"


def test_toc_lists_every_chapter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if re.match(r"book/\d\d_", f)] == [f"book/{p.stem}" for p in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_checks_numbers_and_stores_its_explorer(chapter):
    nb = nbformat.read(chapter, as_version=4)
    tagged = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert tagged, "key numbers must be checked by nbval (tag nbval-check-output)"
    assert all(c.outputs for c in tagged), "tagged cells need stored outputs to compare against"
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {}), \
        "the explorer's widget state must be stored (make notebooks)"
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "not fully executed"


# Trust (DESIGN.md, "how a number earns its place"): a measured number in prose is glued from a
# checked cell. The rule a test can apply: outside math, code and roles, prose may not contain a decimal
# number, a percentage or an integer >= 100. Paper settings and quoted constants go in math ($N = 1000$,
# $0.138\,d$) and the sentence says they are settings or quotations.
_NOT_PROSE = [
    re.compile(r"\A---\n.*?\n---\n", re.S),                          # front matter
    re.compile(r"^(```|~~~|:::).*?^\1", re.S | re.M),                   # code and directive fences
    re.compile(r"\$\$.*?\$\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S),  # display math
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),                         # inline math
    re.compile(r"\{[\w:-]+\}`[^`]*`"),                                   # roles: glue, cite, ref, eq, ...
    re.compile(r"`[^`\n]*`"),                                           # inline code
    re.compile(r"\]\([^)]*\)|<!--.*?-->", re.S),                          # link targets, comments
]
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:\s*%)?")
_GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")
PAGES = [*CHAPTERS, ROOT / "book" / "intro.md", ROOT / "book" / "scale.md"]


def unbound_numbers(markdown: str, *, context: int = 0) -> list[str]:
    """The numbers of ``markdown`` that the prose rule flags (decimals, percentages, integers >= 100),
    each with ``context`` characters of the stripped prose on either side."""
    for pattern in _NOT_PROSE:
        markdown = pattern.sub(" ", markdown)
    hits = []
    for match in _NUMBER.finditer(markdown):
        text = match.group(0)
        if "." in text or "%" in text or int(text.replace(",", "")) >= 100:
            around = markdown[max(0, match.start() - context):match.end() + context]
            hits.append(" ".join(around.split()) if context else text)
    return hits


def _markdown_cells(page: Path) -> list[str]:
    if page.suffix == ".md":
        return [page.read_text()]
    return [c.source for c in nbformat.read(page, as_version=4).cells if c.cell_type == "markdown"]


def _glued(page: Path) -> dict[str, tuple[bool, str]]:
    """Glue key -> (is the gluing cell tagged nbval-check-output, the glued text/plain)."""
    glued = {}
    for cell in nbformat.read(page, as_version=4).cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued[name] = ("nbval-check-output" in cell.metadata.get("tags", []),
                               out["data"].get("application/papermill.record/text/plain", ""))
    return glued


def test_the_prose_rule_flags_measured_numbers_and_spares_math_code_and_glue():
    text = ("The slope is 0.25 and 12 % of 1500 tokens; {glue:text}`slope` of $N = 1000$ tokens, "
            "`d=1000`, {cite}`CDB24`, chapter 3, 40 trials and 10,000 steps.\n\n$$0.138 d$$\n"
            "```python\nx = 0.5\n```\n")
    assert unbound_numbers(text) == ["0.25", "12 %", "1500", "10,000"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_prose_states_no_unbound_measured_number(page):
    flagged = [hit for cell in _markdown_cells(page) for hit in unbound_numbers(cell, context=40)]
    assert not flagged, ("numbers in prose that no cell binds (glue them with assocmem.report.bind, or write "
                         f"a setting or quotation in math): {flagged}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_glued_number_is_a_checked_string(chapter):
    glued = _glued(chapter)
    referenced = {key for cell in _markdown_cells(chapter) for key in _GLUE_ROLE.findall(cell)}
    assert referenced <= glued.keys(), f"glue keys used in prose but never glued: {referenced - glued.keys()}"
    unchecked = [k for k, (tagged, _) in glued.items() if not tagged]
    assert not unchecked, f"glued in cells nbval does not check (tag nbval-check-output): {unchecked}"
    not_text = [k for k, (_, plain) in glued.items() if not plain.startswith(("'", '"'))]
    assert not not_text, f"glue a formatted string (assocmem.report.bind), not a raw value: {not_text}"


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n", "--keep-going",
         "--path-output", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, "strict build failed:\n" + result.stdout[-4000:] + result.stderr[-2000:]
    return out / "_build" / "html"


def test_strict_build(built_book):
    for page in ["index.html", "book/intro.html", "book/api.html", "book/references.html"]:
        assert (built_book / page).is_file(), page
    assert (built_book / "_static/mathjax/tex-chtml.js").is_file()


@pytest.fixture(scope="session")
def server(built_book):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _rendered_dom(url: str, tmp_path: Path) -> str:
    if CHROMIUM is None:
        if os.environ.get("ASSOCMEM_REQUIRE_BROWSER"):
            pytest.fail("no chromium on PATH, and ASSOCMEM_REQUIRE_BROWSER is set (CI installs it)")
        pytest.skip("no chromium on PATH: install Debian's chromium to run the browser check")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000", "--dump-dom"]
    result = subprocess.run([CHROMIUM, *flags, url], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_browser_renders_math_figures_and_widgets(chapter, server, built_book, tmp_path):
    dom = _rendered_dom(f"{server}/book/{chapter.stem}.html", tmp_path)
    assert dom.count("<mjx-container") >= 3, "MathJax did not typeset the chapter's math"
    assert "MathJax" not in re.findall(r"<mjx-merror[^>]*>", dom), "MathJax reported a TeX error"
    figures = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    assert figures, "no figure on the page"
    for src in figures:
        assert (built_book / "book" / src).resolve().is_file(), f"figure {src} missing from the build"
    assert re.search(r'class="[^"]*\bwidget-(slider|dropdown|hslider|inline-hbox)', dom), \
        "the explorer's widgets were not rendered by the widget manager"
