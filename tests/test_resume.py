"""Resume: a SIGKILLed run continued with `lewm train --resume` equals an uninterrupted run.

Bit for bit on the CPU: every random number of step s is drawn from streams
derived from (seed, s), the checkpoint holds the exact weights, AdamW moments and
step counts, and all runs use one torch thread, so the same float operations run
in the same order.

This file is also the script of the run that gets killed:
`python tests/test_resume.py slow-run DATA OUT` (it stalls after step 16 so the
kill lands mid-run, after the step-15 checkpoint exists).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lewm_agent.config import get_preset, replace
from lewm_agent.train import train
from lewm_agent.train_state import STATE_DIR, TrainStateError, latest_train_state

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 30, 5
CLI_ARGS = ["--preset", "test", "--steps", str(STEPS), "--log-every", "1", "--threads", "1"]
CLI_ARGS += ["--checkpoint-every", str(EVERY)]


def _slow_run(data: str, out: str) -> None:
    """What `lewm train ... CLI_ARGS` runs, stalling after step 16 (past the step-15
    checkpoint) until it is killed: a fixed sleep per step lost the race on a loaded
    machine (the run finished before the kill)."""
    p = get_preset("test")
    cfg = replace(p.train, steps=STEPS, log_every=1, threads=1)
    train(
        data,
        p.model,
        cfg,
        log_dir=out,
        device="cpu",
        checkpoint_every=EVERY,
        callback=lambda step, row: time.sleep(3600) if step >= 16 else None,
    )


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lewm_agent.cli", "train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from tests.test_model import _moving_square_dataset

    path = tmp_path_factory.mktemp("resume") / "data"
    _moving_square_dataset(path, episodes=6, steps=40)
    return path


def test_killed_and_resumed_run_equals_uninterrupted_run(data_dir, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    # The killed run, started first so it overlaps the reference run's start-up.
    victim = subprocess.Popen(
        [sys.executable, __file__, "slow-run", str(data_dir), str(run)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    done = _cli("--data", str(data_dir), "--out", str(ref), *CLI_ARGS)
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            latest = latest_train_state(run)
            if latest is not None and int(latest.name.split("-")[1]) >= 15:
                break
            assert victim.poll() is None, victim.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint at step >= 15 within 600 s")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    killed_at = int(latest_train_state(run).name.split("-")[1])  # type: ignore[union-attr]
    assert 15 <= killed_at < STEPS
    assert len(_rows(run / "train_log.csv")) < STEPS  # it really died mid-run

    resumed = _cli("--data", str(data_dir), "--out", str(run), *CLI_ARGS, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed at step {killed_at}" in resumed.stdout

    # The whole loss curve, every logged float at full precision, is identical...
    ref_rows, run_rows = _rows(ref / "train_log.csv"), _rows(run / "train_log.csv")
    assert len(ref_rows) == STEPS
    assert run_rows == ref_rows
    # ...and so are the final weights.
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # Only the newest complete checkpoint is kept; no temporary folders remain.
    assert [p.name for p in (run / STATE_DIR).iterdir()] == [f"step-{STEPS:08d}"]


def test_resume_refuses_other_settings_and_starts_fresh_without_checkpoint(data_dir, tmp_path):
    p = get_preset("test")
    cfg = replace(p.train, steps=6, log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-collapsed fresh weights
        fresh = train(data_dir, p.model, cfg, log_dir=tmp_path, resume=True, progress=False)
        assert fresh.start_step == 0 and len(fresh.log) == 6
        assert latest_train_state(tmp_path).name == "step-00000006"  # type: ignore[union-attr]
        with pytest.raises(TrainStateError, match=r"train\.lr: 0\.001 -> 0\.002"):
            train(
                data_dir,
                p.model,
                replace(cfg, lr=2e-3),
                log_dir=tmp_path,
                resume=True,
                progress=False,
            )
        # A finished run resumes as a no-op that returns its log.
        again = train(data_dir, p.model, cfg, log_dir=tmp_path, resume=True, progress=False)
        assert again.start_step == 6 and again.log == fresh.log


def test_prefetching_workers_give_the_same_batches(data_dir):
    """A batch is a pure function of its step: DataLoader workers change nothing."""
    p = get_preset("test")
    cfg = replace(p.train, steps=4, log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        inline = train(data_dir, p.model, cfg, progress=False, workers=0).log
        workers = train(data_dir, p.model, cfg, progress=False, workers=2).log
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(workers) == strip(inline)


if __name__ == "__main__":
    if sys.argv[1] == "slow-run":
        _slow_run(sys.argv[2], sys.argv[3])
