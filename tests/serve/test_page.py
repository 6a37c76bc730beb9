"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright's Python
package) against a real uvicorn server on a free loopback port."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from hashret.indexing import load_index_model
from hashret.serve import AccessPolicy, create_app
from hashret.store.directory import IndexStore

from .conftest import running

READ_KEY = "page-read-key-0123456789abcdef"

CHROMIUM = os.environ.get("HASHRET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(digits_index):
    """uvicorn serving the digits index on 127.0.0.1:<free port>, in a thread; yields the base URL."""
    store = IndexStore.open(digits_index)
    with running(create_app(store, load_index_model(store))) as (url, _):
        yield url
    store.close()


@pytest.fixture(scope="module")
def keyed_server(digits_index):
    """The same index served with a read key."""
    store = IndexStore.open(digits_index)
    app = create_app(store, load_index_model(store), access=AccessPolicy(read_key=READ_KEY))
    with running(app) as (url, _):
        yield url
    store.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (.ci/run does), "
                    "or point HASHRET_CHROMIUM at a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server + "/")
    expect(pg.locator("#stats")).to_contain_text("items")  # (assertions, not eval: the page's CSP forbids it)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def hit_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#results li.hit", "els => els.map(e => e.dataset.id)")]


def test_upload_shows_the_image_itself_first_and_a_click_searches_by_a_result(
        page, digits_data, png, tmp_path):
    assert "1,438 items" in page.inner_text("#stats")
    query = tmp_path / "query.png"
    query.write_bytes(png(digits_data.train.images[7]))
    page.set_input_files("#file", str(query))
    expect(page.locator("#results li.hit")).to_have_count(12)
    for i in range(12):
        expect(page.locator("#results li.hit img").nth(i)).to_have_js_property("complete", True)
    ids = hit_ids(page)
    assert len(ids) == 12 and ids[0] == 7  # the page re-ranks by default: the image itself is first
    assert page.inner_text("#query-title") == "uploaded: query.png"
    assert len(page.inner_text("#query-code").replace(" ", "")) == 16
    first = page.inner_text("#results li.hit >> nth=0")
    assert "id 7" in first and "H 0" in first and str(digits_data.train.labels[7]) in first
    assert page.eval_on_selector("#results li.hit img", "i => i.naturalWidth") == 8  # the stored thumbnail
    page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
    if os.environ.get("HASHRET_SCREENSHOT"):  # e.g. docs/serve.png
        shutil.copy(tmp_path / "serve.png", os.environ["HASHRET_SCREENSHOT"])
    assert (tmp_path / "serve.png").stat().st_size > 10_000

    third = ids[2]
    page.click("#results li.hit >> nth=2 >> button")
    expect(page.locator("#query-title")).to_have_text(f"item #{third}")
    expect(page.locator("#results li.hit").first).to_have_attribute("data-id", str(third))
    assert hit_ids(page)[0] == third and page.url.endswith(f"#id={third}")


def test_k_and_rerank_controls_and_a_bad_upload(page, digits_data, png, tmp_path):
    page.fill("#k", "5")
    page.uncheck("#rerank")
    query = tmp_path / "q.png"
    query.write_bytes(png(digits_data.train.images[3]))
    page.set_input_files("#file", str(query))
    expect(page.locator("#results li.hit")).to_have_count(5)
    assert "Hamming distance" in page.inner_text("#status") and " E " not in page.inner_text("#results")
    page.check("#rerank")  # changing an option searches again
    expect(page.locator("#status")).to_contain_text("re-rank")
    assert " E 0.0" in page.inner_text("#results li.hit >> nth=0")

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    page.set_input_files("#file", str(bad))
    expect(page.locator("#error")).to_be_visible()
    assert "400" in page.inner_text("#error") and "notes.png" in page.inner_text("#error")
    # the good image's results are gone: nothing under the error reads as the bad file's answer
    expect(page.locator("#results li.hit")).to_have_count(0)
    expect(page.locator("#query")).to_be_hidden()
    page.set_input_files("#file", str(query))  # the page and the server go on working
    expect(page.locator("#results li.hit")).to_have_count(5)
    expect(page.locator("#error")).to_be_hidden()


def test_a_read_key_is_asked_for_and_then_used(browser, keyed_server, digits_data, png, tmp_path):
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(keyed_server + "/")
    expect(pg.locator("#key-form")).to_be_visible()
    assert "401" in pg.inner_text("#error")
    pg.fill("#key", "not-the-key-0123456789")
    pg.click("#key-form button")
    expect(pg.locator("#error")).to_contain_text("403")
    pg.fill("#key", READ_KEY)
    pg.click("#key-form button")
    expect(pg.locator("#stats")).to_contain_text("1,438 items")
    expect(pg.locator("#key-form")).to_be_hidden()
    query = tmp_path / "query.png"
    query.write_bytes(png(digits_data.train.images[7]))
    pg.set_input_files("#file", str(query))
    expect(pg.locator("#results li.hit")).to_have_count(12)
    assert hit_ids(pg)[0] == 7
    first = pg.locator("#results li.hit img").first
    expect(first).to_have_attribute("src", re.compile("^blob:"))  # fetched with the key
    expect(first).to_have_js_property("complete", True)
    assert pg.eval_on_selector("#results li.hit img", "i => i.naturalWidth") == 8
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
