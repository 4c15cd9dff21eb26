"""The results pages (docs/results/*.md) and the README's headline table, from JSON.

Every number of the pages lives in one JSON file of docs/results/: the files the
commands write (`lewm bench planning-quality --json`, `lewm bench paper-prior
--json`, a suite env's results.json with the suite's facts around it), and a few
written once by hand from runs whose commands printed tables only; each of those
names the command that makes such a file in its `source` field. A row may stand
for a row of another file (`{"same_as": "FILE.json#key/0/key", ...}`, its own keys
added), so a measurement shown on two pages is stored once.

`write_result_pages()` (`make docs`) rewrites the pages and the block between
`<!-- results:begin -->` and `<!-- results:end -->` in README.md; `render_pages()`
returns the same texts without writing (tests/eval/test_report.py compares them
with the committed files, so a page edited by hand or a stale one fails).
"""

from __future__ import annotations

from pathlib import Path

from lewm_agent.atomic import atomic_write_text

from .pages import PAGES
from .results import HEADLINE_AGENTS, Results, anchor, success, table

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "docs" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


# ------------------------------------------------------------------ README
def headline_table(res: Results, page: str = "docs/results/suite.md") -> str:
    """4 envs x LeWM / GCBC / PPO / SAC / random, each env linking to its suite table."""
    rows = []
    for name in res.names("suite_"):
        d = res.get(name)
        r = d["results"]
        cells = [f"[{d['title']}]({page}#{anchor(d['title'])})"]
        for _, key in HEADLINE_AGENTS:
            cell = success(r[key]) if key in r else "-"
            if key == "lewm" and d.get("lewm_planner") == "policy":
                cell += ", policy head"
            cells.append(f"**{cell}**" if key == "lewm" else cell)
        cells.append(success(r["random"]) if "random" in r else "-")
        paper = d.get("paper_lewm_success_rate")
        cells.append("-" if paper is None else f"{100 * paper:.0f}%")
        rows.append(cells)
    head = ["env", *(label for label, _ in HEADLINE_AGENTS), "random", "paper's LeWM"]
    return table(head, rows)


def replace_block(text: str, block: str) -> str:
    """`text` with the lines between the results markers replaced by `block`."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(
            f"README.md needs one '{BEGIN}' line and one '{END}' line after it, around "
            "the headline results table; add them where the table belongs"
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


# ------------------------------------------------------------------ entry points
def render_pages(results_dir: Path = RESULTS_DIR, readme: Path | None = README) -> dict[Path, str]:
    """Every page's text (and the README's, with its table block replaced), unwritten."""
    res = Results(results_dir)
    texts = {Path(results_dir) / name: page(res) for name, page in PAGES.items()}
    if readme is not None:
        readme = Path(readme)
        texts[readme] = replace_block(readme.read_text(), headline_table(res))
    return texts


def write_result_pages(results_dir: Path = RESULTS_DIR, readme: Path | None = README) -> list[Path]:
    """Rewrite docs/results/*.md and README.md's results block; returns the files changed."""
    changed = []
    for path, text in render_pages(results_dir, readme).items():
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
            changed.append(path)
    return changed
