"""The command line: list, run, exit codes and errors that name the option."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from assocmem.__main__ import EXIT_USAGE, main, parse_axis

TESTS = Path(__file__).resolve().parent


def test_list_shows_experiments_and_parameters(capsys):
    assert main(["--import", "sweep_fixtures", "list"]) == 0
    out = capsys.readouterr().out
    assert "fixture_slow  (version 1)" in out and "    delay = 0.2" in out


def test_run_writes_the_table_and_a_summary(tmp_path, capsys):
    out = tmp_path / "r.csv"
    code = main(["--import", "sweep_fixtures", "run", "fixture_slow", "--grid", "x=1,2", "--grid", "delay=0",
                 "--cache", str(tmp_path / "c"), "--out", str(out), "--quiet"])
    assert code == 0
    table = pd.read_csv(out)
    assert table.columns.tolist() == ["x", "delay", "x2"] and table["x2"].tolist() == [1, -1, 4, -4]
    assert "2 points, 0 from the cache, 2 computed; wrote" in capsys.readouterr().err


@pytest.mark.parametrize("spec, expected", [
    ("x=1,2,3", [1, 2, 3]), ("x=0:10:4", [0, 4, 8]), ("x=log:10:1000:3", [10, 100, 1000]),
    ("delay=0.5,1e-3", [0.5, 0.001]), ("x=4.0", [4]), ("flag=true,no", [True, False]),
    ("lrs=0.1+1,10", [(0.1, 1.0), (10.0,)]), ("name=a,b", ["a", "b"]),
])
def test_grid_axes(spec, expected):
    defaults = {"x": 0, "delay": 0.2, "flag": False, "lrs": (1.0, 2.0), "name": "z"}
    assert parse_axis(spec, defaults)[1] == expected


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "experiment must be one of"),
    (["run", "fixture_slow", "--grid", "y=1"], "--grid y: unknown parameter"),
    (["run", "fixture_slow", "--grid", "x"], "--grid must look like name=v1,v2"),
    (["run", "fixture_slow", "--grid", "x=1.5"], "--grid x: cannot read '1.5'"),
    (["run", "fixture_slow", "--grid", "x=5:1"], "--grid x: '5:1' gives no values"),
    (["run", "fixture_slow", "--grid", "delay=nan"], "--grid delay: cannot read 'nan'"),
    (["run", "fixture_slow", "--grid", "x=log:0:10:3"], "--grid x: cannot read"),
    (["run", "fixture_slow", "--grid", "x=1+2"], "--grid x: cannot read '1+2'"),
    (["run", "fixture_slow", "--device", "cpu"], "--device: experiment 'fixture_slow' has no device parameter"),
    (["run", "fixture_torch_stats", "--device", "cuda:7"], "--device 'cuda:7': device='cuda:7' is not available"),
    (["run", "fixture_torch_stats", "--grid", "device=cpu,cuda:7"], "--grid device 'cuda:7': device='cuda:7' is not"),
    (["run", "fixture_torch_stats", "--grid", "device=gpu"], "--grid device 'gpu': device must be a device such"),
    (["run", "fixture_torch_stats", "--device", "cpu", "--grid", "device=cpu"], "--device and --grid device=..."),
    (["run", "fixture_slow", "--grid", "x=1", "--grid", "x=2"], "--grid x: the axis is given twice"),
    (["run", "fixture_slow", "--grid", "x=0:1000000000000"], "--grid x: cannot read '0:1000000000000' "
                                                             "(1000000000000 values exceed --max-points 100000)"),
    (["run", "fixture_slow", "--grid", "x=log:1:1e12:1000000000"], "1000000000 values exceed --max-points"),
    (["run", "fixture_slow", "--grid", "x=0:1000", "--grid", "delay=0:1000"], "--grid: 1000000 points exceed"),
    (["run", "fixture_slow", "--grid", "x=0:20", "--max-points", "10"], "--grid x: cannot read '0:20' (20 values"),
    (["run", "fixture_slow", "--max-points", "0"], "--max-points must be >= 1"),
    (["run", "fixture_slow", "--out", "/"], "--out: / is a directory"),
    (["run", "fixture_slow", "--threads", "0"], "--threads must be >= 1"),
    (["run", "fixture_slow", "--workers", "0", "--executor", "processes"], "--workers must be >= 1"),
    (["run", "fixture_slow", "--workers", "2"], "--workers applies to --executor processes or dask"),
    (["run", "fixture_slow", "--scheduler", "tcp://h:1"], "--scheduler applies to --executor dask only"),
    (["run", "fixture_slow", "--cache", "c", "--no-cache"], "--cache and --no-cache exclude each other"),
    (["run", "fixture_slow", "--out", "/no/such/dir/r.csv"], "--out: directory /no/such/dir does not exist"),
])
def test_bad_options_exit_2_naming_the_option(args, message, capsys):
    assert main(["--import", "sweep_fixtures", *args]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("assocmem: error: ") and message in err


def test_output_and_cache_paths_are_checked_before_any_computing(tmp_path, capsys):
    existing, a_file = tmp_path / "r.csv", tmp_path / "file"
    existing.write_text("keep me")
    a_file.write_text("")
    run = ["--import", "sweep_fixtures", "run", "fixture_fails", "--grid", "x=0:2", "--quiet"]
    for extra, message in [(["--out", str(existing), "--no-cache"], f"--out: {existing} exists; pass --overwrite"),
                           (["--cache", str(a_file)], f"--cache: {a_file} is a file, not a directory"),
                           (["--cache", str(a_file / "sub")], "--cache: cache directory"),
                           (["--out", str(tmp_path)], f"--out: {tmp_path} is a directory")]:
        assert main([*run, *extra]) == EXIT_USAGE
        assert message in capsys.readouterr().err
    assert existing.read_text() == "keep me"
    assert main([*run, "--out", str(existing), "--overwrite", "--no-cache"]) == 0
    assert pd.read_csv(existing)["ok"].tolist() == [0, 1]


def test_a_huge_size_fails_at_once_naming_it(capsys):
    code = main(["run", "interference_error_vs_d", "--grid", "trials=1000000000000", "--no-cache", "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "trials: this call needs about" in err and "ASSOCMEM_MAX_WORK" in err


def test_string_axes_are_values_not_ranges():
    assert parse_axis("device=cuda:0,cpu", {"device": "cpu"})[1] == ["cuda:0", "cpu"]
    assert parse_axis("device=cuda:1", {"device": "cpu"})[1] == ["cuda:1"]
    assert parse_axis("name=log:a", {"name": "z"})[1] == ["log:a"]


def test_no_traceback_when_the_reader_of_stdout_leaves():
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(f"{sys.executable} -m assocmem --import sweep_fixtures list | head -1", shell=True,
                            capture_output=True, text=True, env=env)
    assert result.stdout.count("\n") == 1 and "Traceback" not in result.stderr and "Error" not in result.stderr


def test_bad_import_and_unknown_executor(capsys):
    assert main(["--import", "no.such.module", "list"]) == EXIT_USAGE
    assert "--import no.such.module" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "fixture_slow", "--executor", "threads"])
    assert exit_info.value.code == 2


def test_failing_experiment_exits_1_from_the_console_script(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    result = subprocess.run([sys.executable, "-m", "assocmem", "--import", "sweep_fixtures", "run",
                             "fixture_fails", "--grid", "x=0:5", "--no-cache", "--quiet"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "the experiment failed: RuntimeError: boom at x=3" in result.stderr
    assert "Traceback" not in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "assocmem", "run", "--help"], capture_output=True,
                               text=True, env=env)
    assert help_text.returncode == 0 and "--executor {serial,processes,dask}" in help_text.stdout
