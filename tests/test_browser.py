"""The built book in a headless browser, as a reader with no kernel and no network sees it.

Chromium (Debian's ``chromium``) is driven through Playwright (``executable_path``: no browser
download). Every page must load with no console error, no failed request and no uncaught exception;
on every chapter the explorer must work from its stored widget state: moving a slider, changing a
menu or a toggle shows another precomputed figure. A scratch notebook checks the mechanism itself,
down to the bytes: the figure shown is the one ``draw`` makes for the values the controls display.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
APPENDICES = ["book/intro", "book/scale", "book/api", "book/references"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATE_BUDGET = 3_000_000   # bytes of widget state a page may store (assocmem.widgets docstring)

pytestmark = pytest.mark.book


def _need_browser():
    if CHROMIUM is None:
        if os.environ.get("ASSOCMEM_REQUIRE_BROWSER"):
            pytest.fail("no chromium on PATH, and ASSOCMEM_REQUIRE_BROWSER is set (CI installs it)")
        pytest.skip("no chromium on PATH: install Debian's chromium to run the browser checks")


def _build(project: Path, out: Path, *, strict: bool = True) -> Path:
    """Build ``project`` into ``out``; strictly (warnings fail) unless ``strict`` is false: the book's
    own strict build is tests/test_book.py's, these tests only read the pages."""
    flags = ["-W", "-n", "--keep-going"] if strict else ["--keep-going"]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(project), *flags,
         "--path-output", str(out)], capture_output=True, text=True, cwd=project)
    assert result.returncode == 0, "build failed:\n" + result.stdout[-4000:] + result.stderr[-2000:]
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
        yield chromium
        chromium.close()


class Page:
    """A page opened at 1280 px, recording every console error, uncaught exception and failed load."""

    def __init__(self, browser, url: str):
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"{r.status}: {r.url}"))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_timeout(1500)   # MathJax and the widget manager render after load

    def close(self):
        self.page.close()

    def explorers(self):
        return self.page.locator(".assocmem-explorer")

    def shown_figure(self, explorer) -> bytes:
        """The bytes of the explorer's visible image, read back from the page."""
        image = explorer.locator(".widget-image:visible")
        image.first.wait_for(timeout=20_000)
        assert image.count() == 1, f"{image.count()} figures visible in one explorer"
        data = image.first.evaluate(
            """async img => {
                const buffer = await (await fetch(img.src)).arrayBuffer();
                let text = ''; for (const b of new Uint8Array(buffer)) text += String.fromCharCode(b);
                return btoa(text);
            }""")
        return base64.b64decode(data)


# Elements of the page's article that stick out of the text column, contents cut by a clipping box
# (inline glyph overhang of up to 3 px allowed), and code cells that scroll sideways. Display math
# and tables that scroll inside the column are fine.
OVERFLOW_JS = """
() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('article');
  const right = article.getBoundingClientRect().right;
  const shown = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const skip = (e) => e.closest('mjx-assistive-mml, .toggle-hidden, [hidden]');
  const clipped = (e) => {
    for (let a = e.parentElement; a && a !== article; a = a.parentElement)
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    return false;
  };
  const name = (e) => `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]}`;
  const out = [];
  for (const e of article.querySelectorAll('*')) {
    if (skip(e) || !shown(e)) continue;
    const r = e.getBoundingClientRect();
    const o = getComputedStyle(e).overflowX;
    if (r.right > right + 1 && !clipped(e))
      out.push(`${name(e)} sticks out of the column by ${Math.round(r.right - right)} px`);
    if (o === 'hidden' || o === 'clip') {
      let worst = 0;
      for (const c of e.querySelectorAll('*'))
        if (!skip(c) && shown(c)) worst = Math.max(worst, c.getBoundingClientRect().right - r.right);
      if (worst > 3) out.push(`${name(e)} cuts ${Math.round(worst)} px of its content`);
    }
    if (e.matches('div.cell_input pre') && e.scrollWidth > e.clientWidth + 1)
      out.push(`code cell scrolls sideways by ${e.scrollWidth - e.clientWidth} px`);
  }
  return out;
}
"""


def _change(page: Page, control) -> str:
    """Change one explorer control as a reader would; returns what it shows afterwards."""
    classes = control.get_attribute("class") or ""
    if "widget-slider" in classes:
        handle = control.locator(".noUi-handle")
        track = control.locator(".noUi-target")
        handle.scroll_into_view_if_needed()
        box, bar = handle.bounding_box(), track.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        far = bar["x"] + bar["width"] - 1 if x - bar["x"] < bar["width"] / 2 else bar["x"] + 1
        page.page.mouse.move(x, y)
        page.page.mouse.down()
        page.page.mouse.move(far, y, steps=8)
        page.page.mouse.up()
        return control.locator(".widget-readout").inner_text()
    if "widget-dropdown" in classes:
        select = control.locator("select")
        current = select.evaluate("s => s.selectedIndex")
        options = select.locator("option").count()
        select.select_option(index=(current + 1) % options)
        return select.evaluate("s => s.options[s.selectedIndex].text")
    if "widget-toggle-buttons" in classes:
        button = control.locator("button:not(.mod-active)").first
        button.scroll_into_view_if_needed()
        label = button.inner_text()   # before the click: the locator then finds the other button
        button.click()
        return label
    raise AssertionError(f"no way to change an explorer control of class {classes!r}")


def _controls(explorer):
    controls = explorer.locator(".widget-hbox").first.locator(
        ":scope > .widget-slider, :scope > .widget-dropdown, :scope > .widget-toggle-buttons")
    return [controls.nth(i) for i in range(controls.count())]


def _enabled(control) -> bool:
    return not control.locator("select:disabled, button:disabled, .noUi-target[disabled]").count()


# -- the mechanism, on a scratch notebook -------------------------------------------------------------

DRAW = textwrap.dedent('''
    import ipywidgets as w
    import numpy as np
    from assocmem import plotting
    from assocmem.widgets import explorer


    def draw(slope, law, grid):
        x = np.logspace(0, 3, 20)
        fig, ax = plotting.figure()
        plotting.loglog(ax, "x", "y", f"slope {slope}, {law}, grid {grid}")
        ax.plot(x, x ** slope if law == "power" else np.exp(slope * np.log(x) ** 2 / 10), label=law)
        ax.grid(grid)
        ax.legend()
''')

EXPLORER = textwrap.dedent('''
    explorer(draw,
             slope=w.FloatSlider(value=-0.5, min=-2.0, max=0.0, step=0.1, description="slope"),
             law=w.Dropdown(options=["power", "curved"], value="power", description="law"),
             grid=w.Checkbox(value=False, description="grid"))
''')


@pytest.fixture(scope="module")
def scratch_book(tmp_path_factory):
    """A one-chapter book with the project's configuration, its chapter executed here."""
    from nbclient import NotebookClient

    project = tmp_path_factory.mktemp("scratch")
    (project / "book").mkdir()
    shutil.copy(ROOT / "_config.yml", project / "_config.yml")
    shutil.copy(ROOT / "book" / "references.bib", project / "book" / "references.bib")
    for folder in ["_vendor", "_ext"]:
        (project / "book" / folder).symlink_to(ROOT / "book" / folder)
    (project / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/scratch\n")
    (project / "book" / "intro.md").write_text("# Scratch\n\nA page with math $x^2$.\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Scratch chapter\n\nMath: $a$, $b^2$ and\n\n$$c = 1.$$"),
        nbformat.v4.new_code_cell(DRAW), nbformat.v4.new_code_cell(EXPLORER)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    nbformat.write(nb, project / "book" / "scratch.ipynb")
    return _build(project, tmp_path_factory.mktemp("scratch_build")), nb


def _expected_figure(values: dict) -> bytes:
    from assocmem import widgets

    namespace = {}
    exec(DRAW, namespace)
    return widgets._render(namespace["draw"], values)


def test_scratch_explorer_shows_the_figure_of_the_values_it_displays(scratch_book, browser):
    html, _ = scratch_book
    page = Page(browser, (html / "book" / "scratch.html").as_uri())
    try:
        (explorer,) = [page.explorers().nth(i) for i in range(page.explorers().count())]
        slope, law, grid = _controls(explorer)
        values = {"slope": -0.5, "law": "power", "grid": False}
        shown = {page.shown_figure(explorer)}
        assert page.shown_figure(explorer) == _expected_figure(values)
        for control, name in [(slope, "slope"), (law, "law"), (grid, "grid")]:
            label = _change(page, control)
            page.page.wait_for_timeout(300)
            values[name] = {"slope": float, "law": str, "grid": lambda t: t == "on"}[name](label)
            figure = page.shown_figure(explorer)
            assert figure not in shown, f"changing {name} to {label} did not change the figure"
            assert figure == _expected_figure(values), f"the figure shown is not draw({values})"
            shown.add(figure)
        assert page.errors == []
    finally:
        page.close()


def test_scratch_explorer_state_is_within_budget(scratch_book):
    _, nb = scratch_book
    state = json.dumps(nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"])
    assert len(state) <= STATE_BUDGET
    images = [m for m in nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
              if m["model_name"] == "ImageModel"]
    # slope (21 positions), law (2 options), grid (2): the budget of 24 figures gives 6 x 2 x 2
    assert len(images) == 24


# -- the book itself -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    return _build(ROOT, tmp_path_factory.mktemp("book"), strict=False)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_widget_state_within_budget(chapter):
    nb = nbformat.read(chapter, as_version=4)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    size = len(json.dumps(state))
    assert size <= STATE_BUDGET, f"{chapter.name} stores {size} bytes of widget state (budget {STATE_BUDGET})"


PAGES = APPENDICES + [f"book/{p.stem}" for p in CHAPTERS]


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_without_console_errors_and_fits_the_column(name, built_book, browser):
    page = Page(browser, (built_book / f"{name}.html").as_uri())
    try:
        assert page.errors == []
        assert page.page.evaluate(OVERFLOW_JS) == []
    finally:
        page.close()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_explorer_works_without_a_kernel(chapter, built_book, browser):
    page = Page(browser, (built_book / "book" / f"{chapter.stem}.html").as_uri())
    try:
        explorers = page.explorers()
        assert explorers.count() >= 1, \
            "no precomputed explorer on the page (re-execute the chapter: make notebooks NB=...)"
        for i in range(explorers.count()):
            explorer = explorers.nth(i)
            controls = [c for c in _controls(explorer) if _enabled(c)]
            assert controls, "the explorer has no control that changes anything"
            # A control may matter only in some states of the others (a power law's exponent when
            # the scheme is "power"): three passes over the controls, each must change the figure once.
            changed = [False] * len(controls)
            for _ in range(3):
                for k, control in enumerate(controls):
                    before = page.shown_figure(explorer)
                    _change(page, control)
                    page.page.wait_for_timeout(300)
                    changed[k] |= page.shown_figure(explorer) != before
            labels = [c.locator(".widget-label").first.inner_text() if c.locator(".widget-label").count()
                      else str(k) for k, c in enumerate(controls)]
            dead = [label for label, did in zip(labels, changed, strict=True) if not did]
            assert dead == [], f"moving {dead} never changed the figure"
        assert page.errors == [], "console errors after moving the explorer's controls"
    finally:
        page.close()
