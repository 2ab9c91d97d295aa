"""Every command the book prints runs when a reader pastes it.

Commands are extracted from the chapters (their MyST twins: shell code blocks and inline code, and
the executed notebooks' printed output), the intro and the appendix *Running at scale* (code blocks
and its table of paper-scale grids, whose cells omit the ``python -m assocmem`` prefix), and README.

- ``python -m assocmem ...`` runs through the real command line (``assocmem.__main__.main``) as a
  **dry run**: argument parsing, every ``--grid`` axis parsed with the experiment's parameter types,
  the grid size, the executor options, ``--out`` and the cache checked as for a real run; then each
  point's full configuration is built by the experiment (unknown parameters fail) and the experiment's
  own validation runs on it, with the computation itself replaced. ``--device cuda`` is checked as
  ``--device cpu`` (no GPU here).
- ``make TARGET ...`` runs as ``make -n`` (the target exists and its recipe expands).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from assocmem import __main__ as cli
from assocmem import sweep

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "book" / "twins").glob("*.md")) + [
    ROOT / "book" / "intro.md", ROOT / "book" / "scale.md", ROOT / "README.md"]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
PREFIXES = ("python -m assocmem", "make ")


def _shell_blocks(text: str) -> list[str]:
    """Commands in ```bash / ```console / ```shell blocks: continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```(?:bash|console|shell|sh)\s*\n(.*?)^```", text, re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            line = re.sub(r"\s+#.*$", "", line)
            if line.startswith(PREFIXES):
                commands.append(line)
    return commands


def _inline(text: str) -> list[str]:
    """Commands in inline code: `python -m assocmem ...`, `make ...`, and the scale table's `run ...`."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    commands = []
    for code in re.findall(r"`([^`\n]+)`", text):
        if code.startswith(("run ", "list")) and re.match(r"(run [a-z_]+|list)\b", code):
            code = "python -m assocmem " + code
        if code.startswith(PREFIXES) and not code.startswith(("make up", "make a")):
            commands.append(code.strip())
    return commands


def _printed(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    commands = []
    for cell in cells:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) if output.get("output_type") == "stream" else ""
            commands += [line.strip() for line in text.splitlines() if line.strip().startswith(PREFIXES)]
    return commands


def printed_commands() -> dict[str, str]:
    """Command -> where the book prints it (first place)."""
    found = {}
    for path in SOURCES:
        text = path.read_text()
        for command in _shell_blocks(text) + _inline(text):
            found.setdefault(command, str(path.relative_to(ROOT)))
    for path in NOTEBOOKS:
        for command in _printed(path):
            found.setdefault(command, f"{path.relative_to(ROOT)} (printed output)")
    return found


COMMANDS = printed_commands()


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "assocmem"], command
    return words[3:]


# Placeholders the appendix uses for a reader's own machines, and what the dry run puts there.
PLACEHOLDERS = {"tcp://HOST:8786": "tcp://127.0.0.1:8786", "/shared/cache": "{tmp}/shared-cache"}

# The appendix's example of a reader's own experiment module (``--import myexperiments``), as it shows it.
MYEXPERIMENTS = """
from assocmem.sweep import experiment

@experiment("my_scan", version=1)
def my_scan(d=100, seed=0, device="cpu"):
    return {"error": 0.0}
"""


class DryRun:
    """Stands in for ``sweep.run_sweep``: builds and validates every point, computes nothing."""

    def __init__(self):
        self.points = []

    def __call__(self, exp, points, **options):
        exp = sweep.get_experiment(exp)
        for point in points:
            config = exp.config(point)   # unknown names raise ValueError, as in a real run
            _validate_config(exp, config)
            self.points.append(config)
        table = pd.DataFrame(self.points)
        table.attrs["sweep"] = {"points": len(self.points), "cached": 0, "computed": len(self.points)}
        return table


def _validate_config(exp, config: dict) -> None:
    """Values of the experiment's declared choices and types: a value of another type than the
    parameter's default (a bool where the default is an int, a name not among a choice) is what a typo
    in a printed command produces."""
    for name, value in config.items():
        default = exp.defaults[name]
        if default is None or value is None:
            continue
        if isinstance(default, bool) != isinstance(value, bool):
            raise TypeError(f"{exp.name}: {name}={value!r} does not have the type of its default {default!r}")
        if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
            raise TypeError(f"{exp.name}: {name}={value!r} is not a number (default {default!r})")


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: c[:90])
def test_printed_command_runs(command, tmp_path, monkeypatch, capsys):
    where = COMMANDS[command]
    if command.startswith("make "):
        result = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"{where}: `{command}` fails: {result.stderr[-500:]}"
        return
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value.format(tmp=tmp_path))
    argv = _argv(command)
    argv = [("cpu" if word.startswith("cuda") and argv[i - 1] == "--device" else word)
            for i, word in enumerate(argv)]
    if "myexperiments" in argv:
        (tmp_path / "myexperiments.py").write_text(MYEXPERIMENTS)
        monkeypatch.syspath_prepend(str(tmp_path))
    if "run" in argv:
        for i, word in enumerate(argv):          # --out paths relative to a scratch directory
            if word == "--out" and i + 1 < len(argv):
                (tmp_path / argv[i + 1]).parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(sweep.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cli.sweep, "run_sweep", DryRun())
    if "--help" in argv:
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0, f"{where}: `{command}` fails"
        return
    try:
        code = cli.main(argv)
    except SystemExit as exit_:   # argparse rejected the command line
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 0, f"{where}: `{command}` exits with {code}: {err[-800:]}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--out" in c], ids=lambda c: c[:90])
def test_printed_command_can_rewrite_its_committed_output(command):
    """A command that (re)creates a file committed in the repository must say --overwrite, or it fails
    for a reader who pastes it."""
    argv = _argv(command)
    out = argv[argv.index("--out") + 1]
    if (ROOT / out).exists():
        assert "--overwrite" in argv, \
            f"{COMMANDS[command]}: `{command}` fails as printed: {out} exists (add --overwrite)"


def test_commands_are_found():
    # the appendix's table, a chapter's code block and the intro's make commands are all extracted
    assert any(c.startswith("python -m assocmem run finite_sample_joint") and "scale.md" in w
               for c, w in COMMANDS.items())
    assert any("twins" in w for w in COMMANDS.values())
    assert "make book" in COMMANDS and "python -m assocmem list" in COMMANDS


def test_dry_run_rejects_what_a_real_run_rejects(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(sweep.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cli.sweep, "run_sweep", DryRun())
    assert cli.main(["run", "interference_error_vs_d", "--grid", "scheme=uniform"]) == 0
    assert cli.main(["run", "interference_error_vs_d", "--grid", "nonsense=1"]) == 2
    assert cli.main(["run", "interference_error_vs_d", "--grid", "d_min=ten"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["run", "finite_sample_joint", "trials=25"])   # the missing --grid of issue 17


def test_list_prints_whole_summaries_without_markup(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and ":math:" not in out
    package = {n: e for n, e in sweep.experiments().items() if e.fn.__module__.startswith("assocmem.")}
    assert len(package) >= 8
    for name, exp in package.items():   # a reader's (or a test's) own experiments may lack a summary
        block = out.split(f"{name}  (version {exp.version})\n", 1)[1].split("\n    ")[0]
        summary = " ".join(block.split())
        assert summary.endswith((".", ")")), f"list cuts {name}'s summary: {summary!r}"
        for param, default in exp.defaults.items():
            assert f"    {param} = {default!r}" in out
    assert "scheme = 'threshold'" in out
