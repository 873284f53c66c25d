"""The real console process: bad input exits with code 2 and exactly one line on stderr, nothing on stdout."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["missing", "corrupt"])
def test_bad_video_in_a_real_process(name, corrupt_video, tmp_path):
    video = corrupt_video if name == "corrupt" else tmp_path / "missing.mp4"
    # what the `videoai` console script (videoai.cli:main) runs
    console = "import sys; from videoai.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", console, "shots", str(video)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("videoai shots: error: ") and video.name in lines[0]
