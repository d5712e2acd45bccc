"""The documentation holds together: the README's links resolve, the pages build as a
site with mkdocs in strict mode (a broken link or an unlisted page fails), and the
README stays short enough to read in minutes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    broken = []
    for target, _anchor in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        if not (ROOT / target).exists():
            broken.append(target)
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        if anchor not in anchors:
            broken.append("#" + anchor)
    assert not broken, f"README links to missing files or headings: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "docs").rglob("*.md")
        if p.name != "index.md"
    )
    assert pages, "no documentation pages"
    missing = [p for p in pages if f"]({p})" not in text]
    assert not missing, f"pages one click away from the README are missing: {missing}"


def test_readme_is_short_and_keeps_the_two_command_quick_start():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    quick = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_docs_build_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    exe = str(mkdocs) if mkdocs.exists() else shutil.which("mkdocs")
    assert exe, "mkdocs is not installed (it is a dev dependency: make install)"
    proc = subprocess.run(
        [exe, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "results" / "index.html").exists()


def test_reference_pages_match_the_code():
    """The generated pages are what the generator writes from today's code."""
    proc = subprocess.run(
        [sys.executable, "tools/docs_reference.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_profile_field_says_what_it_means():
    from cnnzoo.config.profile import Profile, Schedule, Sweep

    undocumented = [
        f"{model.__name__}.{name}"
        for model in (Profile, Schedule, Sweep)
        for name, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not undocumented, f"profile fields without a description: {undocumented}"
    text = (ROOT / "docs" / "reference" / "profile.md").read_text(encoding="utf-8")
    for name, info in Profile.model_fields.items():
        assert f"`{name}`" in text and " ".join(info.description.split()) in text
