"""The docs site builds with warnings as errors, none suppressed, and points only to files
that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_no_warning_is_suppressed_and_no_missing_file_is_named():
    conf = (DOCS / "conf.py").read_text()
    assert "suppress_warnings" not in conf and "nitpick_ignore" not in conf
    for page in DOCS.rglob("*.rst"):
        for name in re.findall(r"\b[\w/]+\.md\b", page.read_text()):
            assert (ROOT / name).exists() or (page.parent / name).exists(), (page, name)


def test_user_guide_code_runs(capsys):
    text = (DOCS / "guide.rst").read_text()
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", text, flags=re.M)
    assert blocks
    for block in blocks:
        exec(compile(re.sub(r"^ {4}", "", block, flags=re.M), "docs/guide.rst", "exec"), {})
    assert "torch.Size([100])" in capsys.readouterr().out


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    sphinx_build = pytest.importorskip("sphinx.cmd.build")
    status = sphinx_build.build_main(
        ["-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)]
    )
    assert status == 0
    for page in ("api/transforms", "guide", "tutorials/vae", "results/index"):
        assert (tmp_path / f"{page}.html").exists(), page
    results = {p.stem for p in (DOCS / "results").glob("*.json")} - {"registry"}
    assert results and all((tmp_path / "results" / f"{r}.html").exists() for r in results)
