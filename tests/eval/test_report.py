"""The results pages and README's headline table are generated from docs/results/*.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from eval.report import BEGIN, END, README, RESULTS_DIR, render_pages, replace_block
from lewm_agent.stats import wilson_interval

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of docs/results/ and README.md to edit."""
    results = tmp_path / "docs" / "results"
    shutil.copytree(RESULTS_DIR, results)
    readme = tmp_path / "README.md"
    shutil.copy(README, readme)
    return results, readme


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_the_committed_pages_and_readme_are_what_the_json_generates() -> None:
    """A page edited by hand, or one not regenerated after its JSON changed, fails here."""
    texts = render_pages()
    assert {p.name for p in texts} == {
        "suite.md",
        "planning.md",
        "pusht.md",
        "cube.md",
        "probes.md",
        "learn.md",
        "README.md",
    }
    for path, text in texts.items():
        assert path.is_file(), f"{path} is missing: run `make docs`"
        assert path.read_text() == text, f"{path} is stale: run `make docs`"


def test_a_changed_value_changes_the_page_and_the_readme_table(copy) -> None:
    results, readme = copy

    def fewer(data: dict) -> None:
        r = data["results"]["lewm"]
        r["successes"], r["success_rate"] = 37, 37 / 50
        r["success_ci95"] = list(wilson_interval(37, 50))

    _edit(results / "suite_tworoom.json", fewer)
    texts = render_pages(results, readme)
    suite = texts[results / "suite.md"]
    assert "| lewm | 74% (37/50) | 60-84% |" in suite
    assert "98% (49/50) | 90-100% | 21.7" not in suite
    row = re.search(r"^\| \[Two-Room\].*$", texts[readme], re.M).group(0)
    assert "**74% (37/50)**" in row
    # the noise table's default row is the same measurement, stored once (same_as)
    assert (
        "| CEM 300 x 10, coloured noise (default) | 74% (37/50) |" in texts[results / "planning.md"]
    )


def test_a_row_shown_on_two_pages_is_read_from_its_one_file(copy) -> None:
    results, readme = copy
    _edit(results / "quality_pusht.json", lambda d: d["rows"][0].update(successes=5))
    texts = render_pages(results, readme)
    assert (
        "| `lewm bench planning-quality`: one env at a time | 10% (5/50) |"
        in (texts[results / "pusht.md"])
    )


def test_the_readme_block_is_replaced_and_nothing_else() -> None:
    text = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    assert replace_block(text, "NEW") == f"intro\n{BEGIN}\nNEW\n{END}\noutro\n"


@pytest.mark.parametrize(
    "text", ["no markers", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"], ids=str
)
def test_missing_or_misplaced_markers_are_named(text) -> None:
    with pytest.raises(ValueError, match="results:begin"):
        replace_block(text, "NEW")


def test_a_broken_same_as_names_the_file_and_the_key(copy) -> None:
    results, readme = copy
    _edit(results / "cube.json", lambda d: d["rows"][0].update(same_as="suite_cube.json#nope/x"))
    with pytest.raises(ValueError, match="cube.json.*nope/x"):
        render_pages(results, readme)
    (results / "suite_cube.json").unlink()
    with pytest.raises(ValueError, match="suite_cube.json is missing"):
        render_pages(results, readme)


def test_the_readme_is_a_users_page() -> None:
    """At most ~250 lines, and no work history in it or in the docs."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for path in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        body = path.read_text().lower()
        for word in ("session", "load average", "next things to try", "python -m eval"):
            assert word not in body, f"{path.relative_to(ROOT)}: {word!r}"


def test_lewm_report_rewrites_only_what_its_json_changed(copy, capsys) -> None:
    from lewm_agent.cli import main

    results, readme = copy
    argv = ["report", "--results", str(results), "--readme", str(readme)]
    assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out
    suite = results / "suite_tworoom.json"
    before = (results / "suite.md").read_text()
    _edit(suite, lambda d: d["results"]["lewm"].update(successes=1, success_rate=0.02))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "suite.md" in out and (results / "suite.md").read_text() != before


def test_a_learn_reference_is_a_row_of_its_env_table(copy) -> None:
    """Another env's learn comparison lists its trained-once references below its rounds."""
    results, readme = copy

    def fewer(data: dict) -> None:
        ref = data["other_envs"][-1]["references"][0]
        ref["successes"], ref["success_rate"] = 3, 3 / ref["episodes"]

    _edit(results / "learn.json", fewer)
    page = render_pages(results, readme)[results / "learn.md"]
    label = json.loads((results / "learn.json").read_text())["other_envs"][-1]["references"][0]
    assert f"| {label['label']} | - | {label['env_steps']:,} | - | 6% (3/50) |" in page
