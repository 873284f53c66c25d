"""2 CPU processes (torchrun, gloo) give the same weights as 1 process on the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from tiny_training import train_sgd

from videoai.train import find_latest_checkpoint, read_log

SCRIPT = Path(__file__).resolve().parent / "tiny_training.py"
MAX_STEPS = 6  # 32 samples / global batch 8 = 4 steps an epoch: the run crosses an epoch


def test_two_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(SCRIPT), str(tmp_path / "two"), "4", str(MAX_STEPS)]  # per-process batch 4
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    single = train_sgd(tmp_path / "one", batch_size=8, max_steps=MAX_STEPS)
    two = load_file(find_latest_checkpoint(tmp_path / "two") / "model.safetensors")
    for name, value in single.unwrapped_model.state_dict().items():
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-6)
    checkpoint = find_latest_checkpoint(tmp_path / "two")
    rng_files = sorted(p.name for p in checkpoint.glob("random_states_*.pkl"))
    assert rng_files == ["random_states_0.pkl", "random_states_1.pkl"]
    records = read_log(tmp_path / "two")  # written once (main process), losses averaged over both processes
    assert [r["step"] for r in records] == [2, 4, 6]
    expected = [sum(single.losses[i : i + 2]) / 2 for i in (0, 2, 4)]
    torch.testing.assert_close(torch.tensor([r["loss"] for r in records]), torch.tensor(expected))
