"""benchmarks/gpu_check.py: the CPU smoke run fills every row, and without CUDA it prints one line and exits 0."""

import json
import warnings
from pathlib import Path

import pytest
import torch



@pytest.fixture(scope="module")
def gpu_check(load_benchmark):
    with load_benchmark("gpu_check") as module:
        yield module


def test_cpu_small_run_fills_every_row(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--device", "cpu", "--small", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = report["rows"]
    expected = {fn.__name__ for functions in gpu_check.SECTIONS.values() for fn in functions}
    assert {row["numbers"]["check"] for row in rows} == expected  # every section ran and reported
    assert not [row for row in rows if row["status"] in ("error", "FAIL")]
    by_section = {name: [r for r in rows if r["section"] == name] for name in gpu_check.SECTIONS}
    assert len(by_section["correctness"]) == 7 and all(r["status"] == "pass" for r in by_section["correctness"])
    assert all(r["status"] == "n/a (cpu)" for r in by_section["sync"])
    assert all(r["status"] in ("ok", "skipped") and (r["cpu"] or r["device"]) for r in by_section["speed"])
    for row in rows:  # the printed table and the Markdown file show every row
        assert row["name"] in printed
        assert row["name"] in (tmp_path / "gpu_check.md").read_text()


def test_without_cuda_prints_one_line_and_exits_0(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [gpu_check.NEEDS_GPU]


def test_compare_fails_outside_tolerance(gpu_check):
    expected = torch.zeros(3, 4)
    assert gpu_check.compare("x", expected, expected + 1e-5, atol=1e-4).status == "pass"
    assert gpu_check.compare("x", expected, expected + 1e-3, atol=1e-4).status == "FAIL"
    assert gpu_check.compare("x", expected, torch.zeros(4, 3), atol=1).status == "FAIL"
    assert gpu_check.compare("x", torch.tensor([1, 2]), torch.tensor([1, 3]), atol=0).status == "FAIL"


def test_sync_sites_names_each_site_once(gpu_check):
    def hot_loop():
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation")  # what sync debug mode "warn" emits
        warnings.warn("something else")

    sites = gpu_check.sync_sites(hot_loop, enable=False)
    line = hot_loop.__code__.co_firstlineno + 2
    assert sites == [f"{Path(__file__).name}:{line}"] or sites == [f"tests/{Path(__file__).name}:{line}"]
