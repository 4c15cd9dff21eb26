"""Collapse watch: effective rank, the warning rules, and what a collapsing run writes."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch

from lewm_agent.config import get_preset, replace
from lewm_agent.train import LOG_FIELDS, CollapseWatch, effective_rank, train


def test_effective_rank_counts_used_directions():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(512, 32, generator=g)
    assert effective_rank(iso) > 25  # close to the 32 possible
    line = torch.randn(512, 1, generator=g) * torch.randn(1, 32, generator=g)
    assert effective_rank(line) < 1.01  # every embedding on one line
    assert effective_rank(3.0 * iso) == pytest.approx(effective_rank(iso), rel=1e-4)  # scale-free
    assert effective_rank(torch.ones(64, 32)) == 0.0  # a point: no direction at all


def _row(step, std, rank, sig):
    return {"step": step, "emb_std": std, "eff_rank": rank, "sigreg_loss": sig}


def test_watch_fires_once_after_patience_and_not_on_healthy_rows():
    watch = CollapseWatch(start_step=20)
    # Healthy rows from a real test-preset run (batch 16, 48 embeddings of 32 dims).
    for step, std, rank, sig in [
        (30, 0.40, 6.3, 3.97),
        (45, 0.54, 4.5, 2.85),
        (60, 0.64, 4.0, 2.55),
    ]:
        assert watch.check(_row(step, std, rank, sig), 16, 48, 32) == []
    watch = CollapseWatch(start_step=20)
    assert watch.check(_row(10, 0.01, 1.0, 6.4), 16, 48, 32) == []  # before start_step
    assert watch.check(_row(20, 0.04, 13.0, 6.4), 16, 48, 32) == []  # patience: 1 row
    msgs = watch.check(_row(30, 0.03, 1.2, 6.4), 16, 48, 32)
    assert len(msgs) == 1 and "COLLAPSED at step 30" in msgs[0]
    assert "embedding std" in msgs[0] and "SIGReg 6.4" in msgs[0]
    assert "effective rank" not in msgs[0]  # only one row below the rank threshold yet
    msgs = watch.check(_row(40, 0.03, 1.2, 6.4), 16, 48, 32)
    assert len(msgs) == 1 and "effective rank 1.20" in msgs[0]  # now 2 rows: fires
    assert watch.check(_row(50, 0.03, 1.2, 6.4), 16, 48, 32) == []  # each signal once


def test_collapsing_run_warns_and_writes_log_curves_and_tensorboard(tmp_path):
    from tests.helpers.synthetic import moving_square_dataset

    data = moving_square_dataset(tmp_path / "data", episodes=6)
    p = get_preset("test")
    cfg = replace(p.train, steps=80, log_every=5, sigreg_weight=0.0)  # no regulariser
    tb = importlib.util.find_spec("tensorboard") is not None  # the optional extra
    with pytest.warns(RuntimeWarning, match="COLLAPSED"):
        result = train(data, p.model, cfg, progress=False, log_dir=tmp_path / "run", tensorboard=tb)
    assert result.log[-1]["emb_std"] < 0.1
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == LOG_FIELDS and len(rows) == len(result.log)
    assert float(rows[-1]["eff_rank"]) > 0
    png = (tmp_path / "run" / "train_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if tb:
        assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
