"""Command line: list the registered experiments and run grids of them::

    python -m assocmem list
    python -m assocmem run interference_error_vs_d --grid d_max=1000 --grid seed=0:10 \\
        --executor processes --workers 8 --out results.csv

Exit codes: 0 success, 2 bad usage or input (the message names the option), 1 an experiment failed,
130 interrupted by Ctrl-C, 143 by SIGTERM (finished points stay in the cache; the same command resumes).
Everything is checked before any computing: the options, --out (an existing file needs --overwrite), the
cache directory, the grid's size (--max-points) and each call's estimated memory and work (bounds set by
$ASSOCMEM_MAX_BYTES, default the machine's memory, and $ASSOCMEM_MAX_WORK, default 1e14 operations).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import re
import signal
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

from . import sweep
from ._io import atomic_write_text
from .executors import EXECUTORS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
MAX_POINTS = 100_000  # a grid larger than this needs --max-points (each point is a full experiment)


class UsageError(ValueError):
    """Bad input on the command line; the message names the option."""


def parse_axis(spec: str, defaults: dict, *, max_points: int = MAX_POINTS) -> tuple[str, list]:
    """``name=v1,v2,...``, ``name=start:stop[:step]`` (integers, stop excluded) or
    ``name=log:start:stop:num`` (``num`` log-spaced values, rounded and deduplicated when the ends
    are integers). Values take the type of the parameter's default; tuple parameters take
    ``+``-separated items (``lrs=0.1+1,10+100`` is an axis of two tuples). A string parameter takes
    its values as written (``device=cuda:0`` is a device, not a range). An axis longer than
    ``max_points`` is refused before it is built."""
    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or not name or not values:
        raise UsageError(f"--grid must look like name=v1,v2 or name=start:stop, got {spec!r}")
    if name not in defaults:
        raise UsageError(f"--grid {name}: unknown parameter; the parameters are {sorted(defaults)}")
    try:
        textual = isinstance(defaults[name], str) or defaults[name] is None
        if values.startswith("log:") and not textual:
            start, stop, num = values[4:].split(":")
            if int(num) > max_points:
                raise ValueError(f"{num} values exceed --max-points {max_points}")
            axis = _logspace(start, stop, int(num))
        elif ":" in values and "," not in values and not textual:
            axis = range(*[int(v) for v in values.split(":")])
            if len(axis) > max_points:
                raise ValueError(f"{len(axis)} values exceed --max-points {max_points}")
        else:
            axis = [v.strip() for v in values.split(",")]
        axis = [_coerce(v, defaults[name]) for v in axis]
    except ValueError as error:
        raise UsageError(f"--grid {name}: cannot read {values!r} ({error})") from None
    if not axis:
        raise UsageError(f"--grid {name}: {values!r} gives no values")
    return name, axis


def _logspace(start: str, stop: str, num: int) -> list:
    low, high = float(start), float(stop)
    if not (0 < low <= high) or num < 1:
        raise ValueError("log:start:stop:num needs 0 < start <= stop and num >= 1")
    values = [low * (high / low) ** (i / max(num - 1, 1)) for i in range(num)]
    if start.isdigit() and stop.isdigit():
        return sorted({round(v) for v in values})
    return values


def _coerce(value, default):
    """Read ``value`` with the type of the parameter's ``default`` (bool, int, float or str; a tuple
    parameter takes ``+``-separated items, e.g. ``lrs=0.1+1+10``)."""
    if isinstance(default, (tuple, list)):
        item = default[0] if default else ""
        return tuple(_coerce(v, item) for v in str(value).split("+"))
    if isinstance(default, bool):
        if str(value).lower() in {"true", "1", "yes"}:
            return True
        if str(value).lower() in {"false", "0", "no"}:
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if isinstance(default, int):
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(number)
    if isinstance(default, float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not finite")
        return number
    if default is None and str(value).lower() == "none":
        return None
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assocmem", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, to register experiments of your own (repeatable)")
    parser.add_argument("--traceback", action="store_true", help="print the traceback of a failed experiment")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the registered experiments and their parameters")
    run = commands.add_parser("run", help="run a grid of an experiment",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Run EXPERIMENT on the product of the --grid axes; parameters without "
                                          "an axis keep their defaults. Results are cached point by point, so an "
                                          "interrupted run resumes where it stopped.")
    run.add_argument("experiment", help="name of a registered experiment (see `list`)")
    run.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                     help="an axis: d=10,100,1000 | seed=0:10 | d=log:10:1000:20 | lrs=0.1+1,10+100 "
                          "(repeatable)")
    run.add_argument("--executor", choices=EXECUTORS, default="serial", help="where points run (default serial)")
    run.add_argument("--workers", type=int, help="worker processes (processes, local dask cluster)")
    run.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786")
    run.add_argument("--device", help="torch device for experiments with a device parameter: cpu, cuda, cuda:1")
    run.add_argument("--threads", type=int, default=1, help="torch threads per point (default 1)")
    run.add_argument("--cache", metavar="DIR",
                     help=f"cache directory (default ${sweep.CACHE_ENV} or ~/.cache/assocmem)")
    run.add_argument("--no-cache", action="store_true", help="compute every point, store nothing")
    run.add_argument("--out", metavar="FILE.csv", help="write the table as CSV (default: print it)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    run.add_argument("--max-points", type=int, default=MAX_POINTS,
                     help=f"refuse a grid of more points than this (default {MAX_POINTS})")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def command_list() -> None:
    for name, exp in sweep.experiments().items():
        summary = _plain(exp.doc.split("\n\n")[0]) if exp.doc else ""
        print(f"{name}  (version {exp.version})")
        print(textwrap.fill(summary, width=100, initial_indent="  ", subsequent_indent="  "))
        kinds = _parameter_types(exp.doc)
        for param, default in exp.defaults.items():
            kind = f"  -- {_plain(kinds[param])}" if param in kinds else ""
            print(f"    {param} = {default!r}{kind}")


def _plain(text: str) -> str:
    """Docstring text without reST markup: ``x`` -> x, :func:`a.b` -> a.b, lines joined."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return " ".join(text.replace("``", "").split())


def _parameter_types(doc: str) -> dict:
    """The type (and allowed values) of each parameter in a NumPy-style Parameters section."""
    section = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc or "", re.S | re.M)
    kinds = {}
    for line in (section.group(1) if section else "").splitlines():
        if " : " in line and not line.startswith(" "):
            names, kind = line.split(" : ", 1)
            kinds.update({name.strip(): kind.strip() for name in names.split(",")})
    return kinds


def command_run(args) -> int:
    exp = sweep.get_experiment(args.experiment)
    if args.max_points < 1:
        raise UsageError(f"--max-points must be >= 1, got {args.max_points}")
    axes = {}
    for spec in args.grid:
        name, axis = parse_axis(spec, exp.defaults, max_points=args.max_points)
        if name in axes:
            raise UsageError(f"--grid {name}: the axis is given twice; give its values once, comma-separated")
        axes[name] = axis
    if args.device is not None:
        if "device" not in exp.defaults:
            raise UsageError(f"--device: experiment {exp.name!r} has no device parameter")
        if "device" in axes:
            raise UsageError("--device and --grid device=... exclude each other")
        axes["device"] = [args.device]
    for value in axes.get("device", []):
        _checked_device(value, "--device" if args.device is not None else "--grid device")
    points = math.prod(len(axis) for axis in axes.values())
    if points > args.max_points:
        raise UsageError(f"--grid: {points} points exceed --max-points {args.max_points}; "
                         f"raise --max-points to run them")
    if args.cache and args.no_cache:
        raise UsageError("--cache and --no-cache exclude each other")
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.executor != "dask" and args.scheduler:
        raise UsageError("--scheduler applies to --executor dask only")
    if args.executor == "serial" and args.workers is not None:
        raise UsageError("--workers applies to --executor processes or dask")
    out = _checked_out(Path(args.out), args.overwrite) if args.out else None
    cache = None if args.no_cache else sweep.DiskCache(args.cache)
    if cache is not None:
        if cache.directory.exists() and not cache.directory.is_dir():
            raise UsageError(f"--cache: {cache.directory} is a file, not a directory")
        try:
            cache.check_writable()
        except ValueError as error:
            raise UsageError(f"--cache: {error}") from None
    options = {"workers": args.workers, "scheduler": args.scheduler}
    options = {k: v for k, v in options.items() if v is not None}
    start = time.perf_counter()
    table = sweep.run_sweep(exp, sweep.grid(**axes), cache=cache or False,
                            executor=args.executor, threads=args.threads, progress=not args.quiet, **options)
    stats = table.attrs["sweep"]
    if out is None:
        print(table.to_string(index=False))
    else:
        atomic_write_text(out, table.to_csv(index=False))
    where = f"wrote {out} ({len(table)} rows)" if out else f"{len(table)} rows"
    print(f"{exp.name}: {stats['points']} points, {stats['cached']} from the cache, {stats['computed']} computed; "
          f"{where} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return EXIT_OK


def _checked_out(out: Path, overwrite: bool) -> Path:
    """``--out`` checked before any computing: its directory exists and is writable, and it is not a
    directory, nor an existing file unless ``--overwrite``."""
    if out.is_dir():
        raise UsageError(f"--out: {out} is a directory")
    if not out.parent.is_dir():
        raise UsageError(f"--out: directory {out.parent} does not exist")
    if out.exists() and not overwrite:
        raise UsageError(f"--out: {out} exists; pass --overwrite to replace it")
    try:
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as error:
        raise UsageError(f"--out: cannot write in {out.parent} ({error.strerror or error})") from None
    return out


def _checked_device(device: str, option: str = "--device") -> str:
    from ._validate import device as checked

    try:
        checked("device", device)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{option} {device!r}: {error}") from None
    return device


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sweep._signals_as_interrupt():
            return _main(args)
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        print(f"interrupted by {signal.Signals(signum).name}: finished points are in the cache; run the same "
              f"command to resume", file=sys.stderr)
        return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `assocmem list | head`: the reader left; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(args) -> int:
    try:
        for module in args.imports:
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise UsageError(f"--import {module}: {error}") from None
        if args.command == "list":
            command_list()
            return EXIT_OK
        return command_run(args)
    except (UsageError, ValueError, TypeError) as error:
        print(f"assocmem: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except Exception as error:  # an experiment failed: its finished points are in the cache
        if args.traceback:
            traceback.print_exc()
        print(f"assocmem: error: the experiment failed: {type(error).__name__}: {error} (finished points are "
              f"in the cache; --traceback shows where it failed)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
