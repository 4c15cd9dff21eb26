"""eval.bench_paper_prior on the tiny `test` preset: every row timed, ratios consistent."""

from eval.bench_paper_prior import SETTINGS, bench_paper_prior
from lewm_agent.cli import main


def test_rows_and_ratios():
    result = bench_paper_prior("test", rounds=1, progress=False)
    rows = {r["planner"]: r for r in result["rows"]}
    assert set(rows) == set(SETTINGS)
    assert rows["cem-300x30"]["ratio_to_reference"] == 1.0
    assert rows["cem-prior-30x2"]["rollouts_per_plan"] == 60
    for r in rows.values():
        assert r["seconds_per_plan"] > 0 and len(r["all_seconds"]) == 1


def test_cli_writes_json(tmp_path):
    out = tmp_path / "p.json"
    argv = ["--preset", "test", "--rounds", "1", "--json", str(out)]
    assert main(["bench", "paper-prior", *argv]) == 0
    assert '"cem-prior-60x5"' in out.read_text()
