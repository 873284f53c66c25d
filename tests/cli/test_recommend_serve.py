"""`videoai recommend serve`: a real server process on loopback, and its one-line errors."""

import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from videoai.recommend import OneRecRecommender


def first_line(process: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of `process`, or '' after `timeout` seconds."""
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def test_serve_answers_over_http_and_stops_cleanly(recommender_dir, tmp_path):
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "videoai.cli", "recommend", "serve", "--model",
                                    str(recommender_dir), "--port", "0", "--max-batch-size", "4", "--max-wait-ms", "1",
                                    "--device", "cpu", "--log-level", "info"], stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = first_line(process, timeout=120)
        assert line.startswith(f"serving {recommender_dir} (40 items, max batch 4, max wait 1 ms) on "
                               "http://127.0.0.1:"), line + log.read_text()
        url = line.split(" on ", 1)[1].split(": ", 1)[0]
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        answer = httpx.post(f"{url}/recommend", json={"items": [1, 2, "x", 3], "k": 4}, timeout=30).json()
        bad = httpx.post(f"{url}/recommend", json={"items": [1], "k": 41}, timeout=30)
    finally:
        process.terminate()  # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal
        code = process.wait(30)
    items, scores = OneRecRecommender.from_pretrained(recommender_dir).recommend([[1, 2, 3]], k=4)
    assert answer["items"] == items[0] and answer["unknown_items"] == ["x"]
    assert answer["scores"] == pytest.approx(scores[0].tolist(), abs=1e-5)
    assert bad.status_code == 422 and bad.json()["error"] == "k: expected an int in [1, 40] (the catalogue size), got 41"
    assert code == -signal.SIGTERM and "Finished server process" in log.read_text(), log.read_text()


def test_bad_flags(cli, one_line_error, recommender_dir, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, _, err = cli("recommend", "serve", "--model", recommender_dir, "--port", port)
        one_line_error(code, err, "--port: cannot listen on 127.0.0.1:")
    code, _, err = cli("recommend", "serve", "--model", tmp_path / "nope", "--port", "0")
    one_line_error(code, err, "--model: no such folder")
    code, _, err = cli("recommend", "serve", "--model", recommender_dir, "--host", "no.such.host.invalid")
    one_line_error(code, err, "--host: cannot resolve 'no.such.host.invalid'")
    for flag, value in (("--port", "70000"), ("--max-wait-ms", "-1"), ("--max-batch-size", "0")):
        with pytest.raises(SystemExit) as exit_info:
            cli("recommend", "serve", "--model", recommender_dir, flag, value)
        assert exit_info.value.code == 2
