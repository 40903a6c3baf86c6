"""The docs site builds with warnings as errors."""

from pathlib import Path

import pytest

sphinx_build = pytest.importorskip("sphinx.cmd.build")

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    status = sphinx_build.build_main(
        ["-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)]
    )
    assert status == 0
    assert (tmp_path / "api" / "transforms.html").exists()
