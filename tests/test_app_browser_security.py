"""The real ``archlab app`` in Debian's Chromium: a hostile study's names stay text (no image
loaded, no link drawn), and a server on a non-loopback host shows nothing without its token."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from test_app_access import BAD_URLS, HOSTILE, PAYLOAD, make_hostile_study
from test_app_browser import CHROMIUM, CHROMIUM_ARGS, app_server

from archlab.app.demo import make_demo_study

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

#: every attribute through which an element loads or links something (SVG's too)
_LINKS_JS = """(bad) => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const name of ['href', 'src', 'srcset', 'xlink:href', 'data', 'action', 'poster']) {
      const v = el.getAttribute(name);
      if (v && !v.startsWith('#') && bad.some(b => v.includes(b))) found.push(`${el.tagName} ${name}=${v}`);
    }
  }
  return found;
}"""


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `bash scripts/system-deps.sh`")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _idle(page, timeout: float = 90.0) -> None:
    """Wait until Streamlit has finished running the script (no status widget for a second)."""
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and quiet < 3:
        page.wait_for_timeout(350)
        quiet = quiet + 1 if page.locator('[data-testid="stStatusWidget"]').count() == 0 else 0
    assert quiet >= 3, "the page did not settle"


def test_hostile_names_load_no_image_and_draw_no_link(tmp_path, browser):
    url = make_hostile_study(tmp_path / "hostile.db")
    requests: list[str] = []
    with app_server("--storage", url, log=tmp_path / "app.log") as (base, _proc, _started):
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(90_000)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(base)
        page.get_by_role("heading", name="Studies").wait_for()
        _idle(page)
        assert page.get_by_role("heading", name=f"Study {PAYLOAD}").count() == 1  # the literal name, as text
        assert page.evaluate(_LINKS_JS, list(BAD_URLS)) == []
        body = page.locator("body").inner_text()
        assert HOSTILE["sampler"] in body and HOSTILE["experiment"] in body
        for link, title, literal in (("Pareto explorer", "Pareto explorer", HOSTILE["constraint"]),
                                     ("Architecture detail", "Architecture detail", HOSTILE["objective"]),
                                     ("Parameter importance", "Parameter importance", None),
                                     ("Hypervolume", "Hypervolume over trials", None),
                                     ("Compare studies", "Compare studies", None)):
            page.get_by_role("link", name=link, exact=True).click()
            page.get_by_role("heading", name=title).wait_for()
            _idle(page)
            assert page.evaluate(_LINKS_JS, list(BAD_URLS)) == [], link
            assert not page.locator('[data-testid="stException"]').count(), link
            if literal is not None:
                assert literal in page.locator("body").inner_text(), link
        page.locator(".js-plotly-plot").first.wait_for()
        assert not re.search(r"<a |<img ", page.locator(".js-plotly-plot").first.inner_html().replace("&lt;", ""))
    assert not [r for r in requests if any(b in r for b in BAD_URLS)], requests


def test_non_loopback_host_requires_the_printed_token(tmp_path, browser):
    db = tmp_path / "study.db"
    make_demo_study(db, "secret-study", 20, seed=3)
    log = tmp_path / "app.log"
    with app_server(str(db), "--host", "0.0.0.0", log=log) as (base, _proc, _started):
        text = log.read_text()
        assert "warning: --host 0.0.0.0 is not a loopback address" in text
        token = re.search(r"archlab app: http://0\.0\.0\.0:\d+/\?token=([A-Za-z0-9_-]{24})\s", text).group(1)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(90_000)
        for query in ("", "?token=wrong", f"?token={token[:-1]}"):
            page.goto(base + "/" + query)
            page.get_by_text("access token required").wait_for()
            _idle(page)
            shown = page.locator("body").inner_text()
            assert "secret-study" not in shown and token not in shown
            assert page.locator('[data-testid="stDataFrame"], [data-testid="stSidebar"] select').count() == 0
        page.goto(f"{base}/?token={token}")
        page.get_by_role("heading", name="Study secret-study").wait_for()
        page.get_by_role("link", name="Pareto explorer").click()
        page.locator(".js-plotly-plot").wait_for()
        assert f"token={token}" in page.url
        assert "access token required" not in page.locator("body").inner_text()
    assert "Traceback" not in Path(log).read_text()
