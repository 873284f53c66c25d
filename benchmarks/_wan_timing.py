"""Scheduler-step timing and peak memory, shared by bench_generate, bench_wan_tracks and gpu_generate."""

from __future__ import annotations

import time

import torch


def peak_memory_mib(fn, device: torch.device) -> float:
    """Peak tensor memory fn allocates above the starting level, MiB: CUDA allocator peak, or on CPU the peak of the
    running sum of torch's CPU allocations and frees recorded by the profiler."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    total = peak = 0
    for _, size in events:  # a walk over recorded allocation events, once per measurement
        total += size
        peak = max(peak, total)
    return peak / 2**20


def record_step_times(pipe, device: torch.device) -> list[float]:
    """Wrap pipe.scheduler.step so each call appends its end time (after a CUDA sync) to the returned list."""
    stamps: list[float] = []
    step = pipe.scheduler.step

    def timed_step(*args, **kwargs):
        out = step(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return out

    pipe.scheduler.step = timed_step
    return stamps


def step_seconds(stamps: list[float]) -> list[float]:
    """Seconds between consecutive scheduler steps."""
    return [b - a for a, b in zip(stamps, stamps[1:])]
