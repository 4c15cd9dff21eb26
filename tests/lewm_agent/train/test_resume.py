"""Resume: a SIGKILLed run continued with `lewm train --resume` equals an uninterrupted run.

Bit for bit on the CPU: every random number of step s is drawn from streams
derived from (seed, s), the checkpoint holds the exact weights, AdamW moments and
step counts, and all runs use one torch thread, so the same float operations run
in the same order.

This file is also the script of the run that gets killed:
`python tests/lewm_agent/train/test_resume.py slow-run DATA OUT` (it stalls after step 16 so the
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

from lewm_agent.cli import saved_run_settings
from lewm_agent.config import get_preset, replace
from lewm_agent.train import run_meta, train
from lewm_agent.train_state import STATE_DIR, TrainStateError, latest_train_state

ROOT = Path(__file__).resolve().parents[3]
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
        run_meta=run_meta(data, "test", p.plan),  # what `lewm train` records
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
    from tests.helpers.synthetic import moving_square_dataset

    path = tmp_path_factory.mktemp("resume") / "data"
    moving_square_dataset(path, episodes=6, steps=40)
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
    # The reference run goes on meanwhile: waiting for it first let the victim finish
    # before it could be killed on a loaded machine.
    ref_log = tmp_path / "ref.log"
    with open(ref_log, "w") as log:
        reference = subprocess.Popen(
            [sys.executable, "-m", "lewm_agent.cli", "train", "--data", str(data_dir),
             "--out", str(ref), *CLI_ARGS],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
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
    except BaseException:
        reference.kill()  # the test failed: leave no process behind
        raise
    finally:
        if victim.poll() is None:
            victim.kill()
    assert reference.wait(timeout=300) == 0, ref_log.read_text()[-3000:]
    assert victim.returncode == -signal.SIGKILL
    killed_at = int(latest_train_state(run).name.split("-")[1])  # type: ignore[union-attr]
    assert 15 <= killed_at < STEPS
    assert len(_rows(run / "train_log.csv")) < STEPS  # it really died mid-run

    # No flag repeated: data, preset, steps, threads, ... are the saved run's.
    resumed = _cli("--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed at step {killed_at}" in resumed.stdout
    assert "reusing the saved run's settings" in resumed.stdout

    # The whole loss curve, every logged float at full precision, is identical...
    ref_rows, run_rows = _rows(ref / "train_log.csv"), _rows(run / "train_log.csv")
    assert len(ref_rows) == STEPS
    assert run_rows == ref_rows
    # ...and so are the final weights.
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The run finished: its resumable state (optimiser moments) is gone, the model stays.
    assert not (run / STATE_DIR).exists() and not (ref / STATE_DIR).exists()
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in ref.iterdir())


def test_resume_refuses_other_settings_and_starts_fresh_without_checkpoint(data_dir, tmp_path):
    p = get_preset("test")
    cfg = replace(p.train, steps=6, log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-collapsed fresh weights
        fresh = train(
            data_dir,
            p.model,
            cfg,
            log_dir=tmp_path,
            resume=True,
            progress=False,
            keep_train_state=True,
        )
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
        # A finished run kept with keep_train_state resumes as a no-op returning its log
        # (and, without keep_train_state now, deletes the state it no longer needs).
        again = train(data_dir, p.model, cfg, log_dir=tmp_path, resume=True, progress=False)
        assert again.start_step == 6 and again.log == fresh.log
        assert not (tmp_path / STATE_DIR).exists()


def test_finished_run_deletes_train_state_unless_kept(data_dir, tmp_path):
    p = get_preset("test")
    cfg = replace(p.train, steps=4, log_every=1)
    seen: list[bool] = []

    def during(step: int, row: object) -> None:  # a checkpoint exists while running
        seen.append(latest_train_state(tmp_path / "gone") is not None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, keep in (("gone", False), ("kept", True)):
            train(
                data_dir,
                p.model,
                cfg,
                log_dir=tmp_path / name,
                progress=False,
                checkpoint_every=2,
                keep_train_state=keep,
                callback=during if name == "gone" else None,
            )
    assert any(seen)  # step 2's checkpoint was there while the run could still be killed
    assert not (tmp_path / "gone" / STATE_DIR).exists()
    assert (tmp_path / "gone" / "train_log.csv").is_file()
    assert [q.name for q in (tmp_path / "kept" / STATE_DIR).iterdir()] == ["step-00000004"]


def _parse_train(*argv: str):
    from lewm_agent.cli import build_parser

    return build_parser().parse_args(["train", *argv])


def test_resume_reuses_saved_settings_and_explicit_flags_override(data_dir, tmp_path):
    """`lewm train --resume` takes the saved configs; only flags given now change them."""
    p = get_preset("test")
    cfg = replace(p.train, steps=8, log_every=2, lr=2e-3)
    plan = replace(p.plan, samples=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train(
            data_dir,
            p.model,
            cfg,
            log_dir=tmp_path,
            progress=False,
            keep_train_state=True,
            run_meta=run_meta(data_dir, "test", plan),
        )
    data, model_cfg, train_cfg, plan_cfg, saved = saved_run_settings(
        _parse_train("--out", str(tmp_path), "--resume")
    )
    assert saved is not None and Path(data) == data_dir.resolve()
    assert (train_cfg.steps, train_cfg.lr, train_cfg.log_every) == (8, 2e-3, 2)
    assert plan_cfg.samples == 16 and model_cfg.pred_depth == p.model.pred_depth
    # The default preset (cpu) would have said 1200 steps and lr 3e-4: not used here.
    _, _, over, _, _ = saved_run_settings(
        _parse_train("--out", str(tmp_path), "--resume", "--steps", "12")
    )
    assert (over.steps, over.lr) == (12, 2e-3)
    # Without --resume the same folder starts fresh from the preset.
    _, _, fresh, _, saved = saved_run_settings(
        _parse_train("--out", str(tmp_path), "--data", str(data_dir))
    )
    assert saved is None and fresh.steps == get_preset("cpu").train.steps


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
