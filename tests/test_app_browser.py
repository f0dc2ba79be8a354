"""The real ``archlab app`` server on a free port, and the dashboard driven by Debian's Chromium.

Playwright only drives the browser at ``/usr/bin/chromium`` (installed by
``scripts/system-deps.sh``); it never downloads one. The screenshot lands in
``test-artifacts/app.png``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from archlab.app import figures
from archlab.app.demo import make_demo_study
from archlab.search.results import load_trials, pareto_front

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
AXES = [{"name": "error", "direction": "minimize"}, {"name": "latency_ms", "direction": "minimize"}]

pytestmark = [pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _archlab() -> list[str]:
    exe = Path(sys.executable).with_name("archlab")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "archlab"]


def _wait_healthy(proc: subprocess.Popen, port: int, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"archlab app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"archlab app did not answer on port {port} within {timeout:.0f} s:\n{log.read_text()}")


def _decode(v):
    """A plotly array as a list: plain, or typed (``{"dtype", "bdata"}``, base64)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v or [])


def _traces(page) -> dict[str, dict[str, list]]:
    """``{trace name: {"customdata", "x", "y"}}`` of the page's plotly figure, as the browser holds it."""
    text = page.evaluate("() => { const g = document.querySelector('.js-plotly-plot');"
                         " return g && g.data ? JSON.stringify(g.data) : null; }")
    if text is None:
        return {}
    return {t["name"]: {k: _decode(t.get(k)) for k in ("customdata", "x", "y")} for t in json.loads(text)}


def _drawn_front_points(page) -> int:
    """Marker paths plotly drew for the front (the last scatter trace) in the SVG."""
    return page.evaluate("() => { const t = document.querySelectorAll('.js-plotly-plot .scatterlayer .trace');"
                         " return t.length ? t[t.length - 1].querySelectorAll('.points path.point').length : -1; }")


def _settled(page, changed=lambda tr: True, timeout: float = 90.0) -> dict[str, dict[str, list]]:
    """Wait until Streamlit is idle and the figure holds still (and satisfies ``changed``)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        page.wait_for_timeout(400)
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        tr = _traces(page)
        if not running and tr and figures.FRONT in tr and tr == last and changed(tr):
            return tr
        last = tr
    raise AssertionError(f"the Pareto plot did not settle within {timeout:.0f} s")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("browser") / "study.db"
    make_demo_study(path, "first", 160, seed=7)
    return make_demo_study(path, "demo", 200, seed=1)  # the default study (the last one)


@contextlib.contextmanager
def app_server(*args: str, log: Path) -> Iterator[tuple[str, subprocess.Popen, float]]:
    """``archlab app ARGS --port FREE`` as a subprocess: (base URL, process, seconds until healthy);
    the server (its whole process group) is stopped on exit."""
    port = _free_port()
    t = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([*_archlab(), "app", *args, "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)
    try:
        _wait_healthy(proc, port, log)
        yield f"http://127.0.0.1:{port}", proc, time.monotonic() - t
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `bash scripts/system-deps.sh`")
    pytest.importorskip("playwright.sync_api")
    log = tmp_path_factory.mktemp("server") / "app.log"
    with app_server("--storage", store, log=log) as (base, _proc, _started):
        yield base, log


def test_server_starts_fast_and_loads_no_torch(tmp_path):
    """The real ``archlab app`` process (a runs directory as target): healthy, serving the page,
    and no torch library mapped into it."""
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    make_demo_study(run / "study.db", "demo", 30, seed=2)
    with app_server(str(tmp_path / "runs"), log=tmp_path / "app.log") as (base, proc, started):
        with urllib.request.urlopen(base + "/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        maps = Path(f"/proc/{proc.pid}/maps")
        if maps.exists():  # Linux: what the server process has loaded
            assert "libtorch" not in maps.read_text()
    assert proc.poll() is not None  # stopped
    print(f"archlab app healthy after {started:.2f} s")  # the goals live in bench/


@pytest.mark.browser
@pytest.mark.slow
def test_pick_study_move_slider_and_the_plot_follows(server, store):
    from playwright.sync_api import sync_playwright

    base, log = server
    df = load_trials(store, "first")
    expected_front = sorted(pareto_front(df, AXES)["number"].tolist())
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.set_default_timeout(90_000)
            page.goto(base)
            page.wait_for_selector('[data-testid="stDataFrame"]')  # the Studies table
            # pick the study in the sidebar (the app opens on the last one, "demo")
            study = page.get_by_role("combobox", name="Study")
            assert study.input_value() == "demo"
            study.click()
            page.get_by_role("option", name="first", exact=True).click()
            page.get_by_role("heading", name="Study first").wait_for()
            page.get_by_role("link", name="Pareto explorer").click()
            t = time.monotonic()
            page.wait_for_selector(".js-plotly-plot")
            before = _settled(page)
            first_render = time.monotonic() - t
            assert "/pareto" in page.url and "study=first" in page.url
            # the highlighted front is the results API's front, drawn as that many markers
            assert sorted(int(n) for n in before[figures.FRONT]["customdata"]) == expected_front
            assert _drawn_front_points(page) == len(expected_front) > 2
            slider = page.locator(".st-key-bound-first-latency_ms input[type='range']")
            start, step = float(slider.input_value()), float(slider.get_attribute("step"))
            # tighten the latency bound to the middle of the front's latencies, by keyboard
            target = float(np.median(before[figures.FRONT]["y"]))
            slider.focus()
            for _ in range(int(np.ceil((start - target) / step))):
                page.keyboard.press("ArrowLeft")
            bound = float(slider.input_value())
            assert bound <= target < start
            tight = df.assign(feasible=df["feasible"] & (df["latency_ms"] <= bound))
            expected_after = sorted(pareto_front(tight, AXES)["number"].tolist())
            assert expected_after != expected_front
            after = _settled(page, changed=lambda tr: tr[figures.FRONT] != before[figures.FRONT])
            assert sorted(int(n) for n in after[figures.FRONT]["customdata"]) == expected_after
            assert max(after[figures.FRONT]["y"]) <= bound
            assert _drawn_front_points(page) == len(expected_after)
            shown = page.locator('[data-testid="stMetric"]', has_text="front size")
            assert shown.locator('[data-testid="stMetricValue"]').inner_text().strip() == str(len(expected_after))
            # points that left the front are drawn as infeasible now
            infeasible = {int(n) for n in after[figures.INFEASIBLE]["customdata"]}
            assert set(expected_front) - set(expected_after) <= infeasible | {
                int(n) for n in after[figures.DOMINATED]["customdata"]}
            assert not page.locator('[data-testid="stException"]').count()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app.png"))
        finally:
            browser.close()
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000
    assert "Traceback" not in log.read_text()
    print(f"Pareto explorer drawn {first_render:.1f} s after the click; front {len(expected_front)} -> "
          f"{len(expected_after)} points at latency_ms <= {bound:.4g}")
