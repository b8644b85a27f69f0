"""The documentation points at what exists: every link of the README and of every docs page
resolves, every path of the repository they name in code is there, every page is in the site's
navigation, and the site builds (MkDocs, strict)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:orchestrator|workloads|bench|tests|examples|helm|manifests|scripts|docs|\.ci)/[^`\s]*)`")
MADE_BY_RUNNING = ("vlmscale-runs",)  # folders a run creates


def _links(page: Path) -> list[str]:
    return [a or b for a, b in LINK.findall(page.read_text())]


def _code_paths(page: Path) -> list[str]:
    out = []
    for raw in CODE_PATH.findall(page.read_text()):
        path = re.split(r"::|:(?=\w)|#", raw)[0].rstrip(".,:;)")
        if not any(c in path for c in "<>*…{}$") and not any(part in path for part in MADE_BY_RUNNING):
            out.append(path)
    return out


def test_the_readme_is_what_a_newcomer_reads_in_five_minutes():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 250
    assert "make demo" in text and "make test" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    missing = []
    for target in _links(page):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the page
        if not (page.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_named_in_code_exists(page):
    assert [p for p in _code_paths(page) if not (ROOT / p).exists()] == []


def test_the_checks_find_a_broken_link_and_a_missing_path(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](nowhere.md) and `orchestrator/nowhere.py` and `orchestrator/errors.py`\n")
    assert _links(page) == ["nowhere.md"] and not (tmp_path / "nowhere.md").exists()
    assert _code_paths(page) == ["orchestrator/nowhere.py", "orchestrator/errors.py"]


def test_every_page_is_in_the_sites_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = {next(iter(entry.values())) for entry in config["nav"]}
    assert listed == {p.name for p in PAGES if p.parent.name == "docs"}


def test_the_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()
