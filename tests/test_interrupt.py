"""Interrupting a sweep loses nothing and leaves no process behind.

Each executor (serial, a process pool, a Dask LocalCluster) runs a CLI sweep of ``fixture_slow`` and is
interrupted part-way with SIGINT (Ctrl-C), SIGTERM (what batch systems send) or SIGKILL of the parent.
Then: every point that had finished before the signal is in the cache (lost points = finished - cached,
must be 0), no process started by the sweep is still alive (orphans, found by a marker in their
environment, must be 0), SIGINT and SIGTERM exit 130 and 143 with the resume message, and the same
command resumes computing exactly the missing points. A point counts as finished before the signal when
it logged its completion at least ``GRACE_S`` before it (a result still in transit from a worker is not
yet the runner's to keep).
"""

import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytest
from sweep_fixtures import LOG_ENV

from assocmem import sweep

TESTS = Path(__file__).resolve().parent
POINTS, DELAY, GRACE_S = 20, 0.25, 1.0
TAG_ENV = "ASSOCMEM_TEST_TAG"


def _tagged_processes(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``tag``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"{TAG_ENV}={tag}".encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _finished(log: Path) -> dict[int, float]:
    """Points the experiment completed, with the time it logged each."""
    if not log.exists():
        return {}
    done = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            done[int(parts[0])] = float(parts[1])
    return done


def _cached(cache: Path) -> set[int]:
    """The points stored in the cache (``fixture_slow`` stores x² in its first row)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every surviving entry is complete and valid
        entries = [sweep.DiskCache(cache).load(p.stem) for p in cache.rglob("*.json")]
    return {round(rows[0]["x2"] ** 0.5) for rows in entries}


def _as_in_a_terminal() -> None:
    """Give the sweep the SIGINT of a terminal's foreground job. A shell starts background jobs with
    SIGINT ignored and exec keeps an ignored signal ignored, so a suite run from one (``make test &``)
    would otherwise hand the sweep a Ctrl-C it can never receive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _command(tmp_path: Path, executor: str, out: str) -> list[str]:
    workers = [] if executor == "serial" else ["--workers", "2"]
    return [sys.executable, "-m", "assocmem", "--import", "sweep_fixtures", "run", "fixture_slow", "--quiet",
            "--grid", f"x=0:{POINTS}", "--grid", f"delay={DELAY}", "--cache", str(tmp_path / "cache"),
            "--executor", executor, *workers, "--out", str(tmp_path / out)]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find orphans")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
@pytest.mark.parametrize("executor", ["serial", "processes", "dask"])
def test_interrupted_sweep_loses_no_point_and_leaves_no_process(tmp_path, executor, signum):
    if executor == "dask":
        pytest.importorskip("distributed")
    tag, log = uuid.uuid4().hex, tmp_path / "first.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           LOG_ENV: str(log), TAG_ENV: tag}
    proc = subprocess.Popen(_command(tmp_path, executor, "first.csv"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal)
    deadline = time.time() + 180  # a loaded machine starts torch and Dask slowly
    while (sum(at < time.time() - GRACE_S for at in _finished(log).values()) < 3 and time.time() < deadline
           and proc.poll() is None):
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before it was interrupted: {proc.stderr.read()}"
    sent = time.time()
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the sweep did not stop within 120 s of {signum.name}")

    deadline = time.time() + 60  # workers notice a dead parent within a second or so
    while _tagged_processes(tag) and time.time() < deadline:
        time.sleep(0.2)
    orphans = _tagged_processes(tag)
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], f"{len(orphans)} process(es) outlived the {executor} sweep after {signum.name}"

    finished = _finished(log)
    before = {x for x, at in finished.items() if at < sent - GRACE_S}
    cached = _cached(tmp_path / "cache")
    assert len(before) >= 3 and len(cached) < POINTS, "the sweep should have been interrupted part-way"
    lost = before - cached
    assert lost == set(), f"{len(lost)} finished point(s) lost by the {executor} sweep on {signum.name}"
    if signum != signal.SIGKILL:
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
        assert f"interrupted by {signum.name}: finished points are in the cache" in stderr
        assert "Traceback" not in stderr
    assert not (tmp_path / "first.csv").exists()

    resumed_log = tmp_path / "second.log"
    resumed = subprocess.run(_command(tmp_path, "serial", "resumed.csv"),
                             env={**env, LOG_ENV: str(resumed_log), TAG_ENV: "resumed"},
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    recomputed = set(_finished(resumed_log))
    assert recomputed == set(range(POINTS)) - cached, "the resumed sweep recomputed a cached point"
    assert f"{len(cached)} from the cache, {POINTS - len(cached)} computed" in resumed.stderr
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_landing_in_a_finalizer_still_interrupts(tmp_path, signame):
    """Python prints an exception raised inside ``__del__`` and drops it: a Ctrl-C or SIGTERM landing
    while Dask releases a future would be lost and the sweep would run to its end (caught under load).
    The signal is kept: the point in hand finishes and is stored, no later point starts, the sweep exits
    130 or 143 with the resume message and no traceback."""
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           LOG_ENV: str(log)}
    done = subprocess.run(
        [sys.executable, "-m", "assocmem", "--import", "sweep_fixtures", "run", "fixture_signal_in_finalizer",
         "--quiet", "--grid", "x=0:6", "--grid", f"signum={signame}", "--cache", str(tmp_path / "cache"),
         "--out", str(tmp_path / "out.csv")],
        env=env, capture_output=True, text=True, timeout=120, preexec_fn=_as_in_a_terminal)
    assert done.returncode == {"SIGINT": 130, "SIGTERM": 143}[signame], done.stderr
    assert f"interrupted by {signame}: finished points are in the cache" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert sorted(_finished(log)) == [0, 1, 2] and _cached(tmp_path / "cache") == {0, 1, 2}
    assert not (tmp_path / "out.csv").exists()
