"""The README's examples run as written (blocks marked ``<!-- readme-test -->``)."""

import re
import shlex
from pathlib import Path

import pytest

from hashret.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks(marker: str = "<!-- readme-test -->") -> list[tuple[str, str]]:
    text = README.read_text()
    return re.findall(re.escape(marker) + r"\n```(\w+)\n(.*?)```", text, flags=re.S)


def test_readme_has_tested_examples():
    langs = [lang for lang, _ in readme_blocks()]
    assert langs == ["bash"]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Run the README's CLI block once, in a fresh folder; return the folder and the output."""
    import contextlib
    import io
    import os

    work = tmp_path_factory.mktemp("readme")
    (_, block), = readme_blocks()
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with contextlib.redirect_stdout(out):
            for line in block.strip().splitlines():
                args = shlex.split(line, comments=True)
                assert args[0] == "hashret", line
                assert main(args[1:]) == 0, line
    finally:
        os.chdir(cwd)
    return work, out.getvalue()


def test_readme_cli_examples_run(readme_run):
    work, out = readme_run
    assert "map@100" in out and "top 5 for runs/demo/query.png" in out
    assert (work / "runs/digits16/report.json").exists()
    assert (work / "runs/demo/precision_at_k.png").exists()


#: the pages whose python examples run after the README's commands, in this order
DOC_PAGES = ["README.md", "docs/usage.md", "docs/search-engine.md", "docs/serving.md", "docs/baselines.md",
             "docs/scaling-out.md", "docs/results.md", "docs/development.md"]


def test_every_doc_page_is_tested_and_linked():
    root = README.parent
    assert sorted(p.name for p in (root / "docs").glob("*.md")) == sorted(Path(p).name for p in DOC_PAGES[1:])
    for page in DOC_PAGES[1:]:
        assert f"]({page})" in README.read_text(), f"the README does not link {page}"


def test_readme_python_examples_run(readme_run, monkeypatch, capsys):
    """Every python block of the README and the docs pages, in order, in the folder where the
    README's CLI block ran."""
    monkeypatch.chdir(readme_run[0])
    text = "\n".join((README.parent / page).read_text() for page in DOC_PAGES)
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "digits/" in out  # the run's search by image
    assert re.search(r"^\[1438 .*\] \[0 ", out, flags=re.M), out  # the index finds the added image first


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "mnist", "--data-dir", "nowhere", "--out", "x"], "nowhere"),
    (["train", "--dataset", "digits", "--bits", "4", "--out", "x"], "between 8 and 256"),
    (["evaluate", "no-such-run"], "not a trained run"),
    (["search", "no-such-run", "--image", "x.png"], "not a trained run"),
])
def test_cli_errors_are_clear(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_search_rejects_a_non_image(digits_run, tmp_path, capsys):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"hello")
    assert main(["search", str(digits_run), "--image", str(bad)]) == 2
    assert "not-an-image.png" in capsys.readouterr().err


def test_download_offline_says_what_to_fetch(tmp_path, monkeypatch, capsys):
    import functools

    import hashret.data

    # no network in tests: a mirror that cannot answer stands for an offline machine
    offline = functools.partial(hashret.data.download_mnist, mirrors=["file:///nonexistent/"])
    monkeypatch.setattr(hashret.data, "download_mnist", offline)
    assert main(["download", "mnist", "--out", str(tmp_path / "mnist")]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "by hand" in err
