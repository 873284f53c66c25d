"""End to end in headless Chromium: draw a path by clicking, generate, get playable mp4s back; all offline."""

import importlib.util
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import PIL.Image
import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REQUIRE_BROWSER = os.environ.get("VIDEOAI_REQUIRE_BROWSER", "").lower() not in ("", "0", "false", "no")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _chromium() -> str:
    """Path of the Chromium binary; skip (or fail, when VIDEOAI_REQUIRE_BROWSER is set) when it is missing."""
    path = os.environ.get("VIDEOAI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    missing = [] if Path(path).is_file() else [f"no Chromium at {path} (apt-get install chromium)"]
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright is not installed (pip install playwright; never `playwright install`)")
    if missing:
        message = "; ".join(missing)
        if REQUIRE_BROWSER:
            pytest.fail(f"VIDEOAI_REQUIRE_BROWSER is set but {message}")
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_outbound: list | None = None  # remote addresses this process tried to reach while a test records them
_audit_installed = False


def _audit(event, args):
    if _outbound is not None and event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address and address[0] not in LOOPBACK:
            _outbound.append(address)


# gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix
@pytest.mark.filterwarnings("ignore:::gradio.queueing")
def test_draw_generate_and_play_offline(tiny_pipeline, tmp_path):
    global _outbound, _audit_installed
    chromium = _chromium()
    if not _audit_installed:  # audit hooks cannot be removed; this one records only while _outbound is a list
        sys.addaudithook(_audit)
        _audit_installed = True
    from playwright.sync_api import expect, sync_playwright

    from videoai.app import launch_app
    from videoai.tokenize.video_io import read_video

    upload = tmp_path / "upload.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(upload)
    _outbound = []
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = launch_app("127.0.0.1", port, pipeline_factory=lambda model_dir: tiny_pipeline,
                     output_dir=tmp_path / "videos", num_frames=5, num_steps=2, block=False)
    requests = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(base, wait_until="domcontentloaded", timeout=30_000)

            canvas = page.locator("#canvas img")
            expect(canvas).to_be_visible(timeout=20_000)
            status = page.locator("#status")
            # uploading an image replaces the default one and starts a new drawing on it
            default_src = canvas.get_attribute("src")
            page.locator("#image-input input[type=file]").set_input_files(str(upload))
            expect(canvas).not_to_have_attribute("src", default_src, timeout=20_000)
            expect(canvas).to_have_js_property("naturalWidth", 80 * 6)  # 48 x 80 shown 6x larger
            box = canvas.bounding_box()
            # three clicks across the image: one path with three vertices, each where it was clicked
            for index, (fx, fy) in enumerate([(0.2, 0.2), (0.5, 0.6), (0.8, 0.3)], start=1):
                canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
                expect(status).to_contain_text(f"1 path(s), {index} vertices", timeout=10_000)
                x, y = map(float, re.search(r"image pixel \((\S+), (\S+)\)", status.inner_text()).groups())
                assert abs(x - (fx * 80 - 0.5)) <= 1 and abs(y - (fy * 48 - 0.5)) <= 1, (fx, fy, x, y)
            page.locator("#mode label", has_text="anchor").click()
            canvas.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.9})
            expect(status).to_contain_text("1 anchor(s)", timeout=10_000)
            page.locator("#undo").click()
            expect(status).to_contain_text("0 anchor(s)", timeout=10_000)
            page.screenshot(path=str(tmp_path / "drawn.png"), full_page=True)

            page.locator("#generate").click()
            video = page.locator("#video video")
            expect(video).to_have_attribute("src", re.compile(r".+"), timeout=60_000)
            expect(page.locator("#overlay video")).to_have_attribute("src", re.compile(r".+"), timeout=10_000)
            expect(page.locator("#result")).to_contain_text("Done: 1 track(s), 5 frames", timeout=10_000)
            page.screenshot(path=str(tmp_path / "generated.png"), full_page=True)

            sources = [page.locator(f"#{name} video").get_attribute("src") for name in ("video", "overlay")]
            for name, src in zip(("video", "overlay"), sources):
                assert src, f"the {name} element has no src"
                response = page.request.get(src if src.startswith("http") else base + src)
                assert response.ok, f"{src}: HTTP {response.status}"
                (tmp_path / f"{name}.mp4").write_bytes(response.body())
            browser.close()
    finally:
        app.close()
        outbound, _outbound = _outbound, None

    clip = read_video(tmp_path / "video.mp4")
    assert clip.frames.shape == (5, 32, 32, 3)  # the tiny pipeline's 32 x 32, 5 frames
    overlay = read_video(tmp_path / "overlay.mp4")
    assert overlay.num_frames == 5 and overlay.width > 32  # upscaled for display
    foreign = [url for url in requests if urlparse(url).scheme in ("http", "https", "ws", "wss")
               and urlparse(url).hostname not in LOOPBACK]
    assert not foreign, f"the page tried to reach the network: {foreign[:5]}"
    assert not outbound, f"the server tried to reach the network: {outbound[:5]}"
