"""Pre-training on two "machines" with PyTorch's launcher, against one process.

Two torchrun agents of one process each (``--nnodes 2 --nproc_per_node 1``, gloo, c10d
rendezvous on localhost) run nnU-Net's own training module with the float64 test variant
of the pre-training trainer; they crash (SIGKILL) after the first epoch's checkpoint and are
started again with ``--c``. The resumed two-process run must end with the loss curve and the
weights of one uninterrupted process training the same batches (float64: the differences
left are rounding of the reduction order).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_cli import nnunet_env, run
from pretraining_cases import write_dataset
from vox2vec_nnunet_plans.builder import PRETRAINING_CONFIGURATION, build_plans, default_settings

pytestmark = pytest.mark.slow

DATASET = "Dataset900_Pretraining"
TRAINER = "Vox2VecPretrainTrainer_Float64Test"
PATCH = (8, 16, 16)
SHAPES = [(10, 36, 40), (12, 40, 44), (6, 32, 36), (9, 38, 34)]


def training(*extra: str) -> list[str]:
    return ["-m", "nnunetv2.run.run_training", DATASET, PRETRAINING_CONFIGURATION, "all", "-p", "Vox2VecPlans",
            "-tr", TRAINER, "-device", "cpu", *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def two_nodes(env: dict[str, str], *extra: str) -> list[subprocess.CompletedProcess]:
    """Two torchrun agents, one process each, meeting at a localhost rendezvous."""
    endpoint = f"localhost:{free_port()}"
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node",
                                "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "vox2vec",
                                "--max_restarts", "0", *training(*extra)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outputs = [agent.communicate(timeout=300)[0] for agent in agents]
    return [subprocess.CompletedProcess(agent.args, agent.returncode, output) for agent, output in zip(agents, outputs)]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = dict(nnunet_env(tmp_path), nnUNet_n_proc_DA="0", OMP_NUM_THREADS="1")
    base = Path(environment["nnUNet_preprocessed"]) / DATASET
    (base / f"Vox2VecPlans_{PRETRAINING_CONFIGURATION}").mkdir(parents=True)
    write_dataset(base / f"Vox2VecPlans_{PRETRAINING_CONFIGURATION}", SHAPES, PATCH, body_voxels_property=True)
    settings = default_settings(PRETRAINING_CONFIGURATION).with_overrides(patch_size=PATCH, base_channels=2,
                                                                          num_levels=3)
    plans = build_plans(DATASET, "Vox2VecPlans", {PRETRAINING_CONFIGURATION: settings}, "SimpleITKIO", [0, 1, 2], ["CT"],
                        [2.0, 1.0, 1.0], list(SHAPES[0]))
    (base / "Vox2VecPlans.json").write_text(json.dumps(plans))
    (base / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "body": 1}, "numTraining": len(SHAPES),
        "file_ending": ".nii.gz"}))
    (base / "dataset_fingerprint.json").write_text("{}")
    return environment


def fold(env: dict[str, str]) -> Path:
    return Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__Vox2VecPlans__{PRETRAINING_CONFIGURATION}" / "fold_all"


def test_two_nodes_killed_and_resumed_train_the_single_process_model(env, tmp_path):
    single = dict(env, nnUNet_results=str(tmp_path / "single"))
    run([sys.executable, *training()], single)
    expected = torch.load(fold(single) / "checkpoint_final.pth", map_location="cpu", weights_only=True)

    crashed = two_nodes(dict(env, VOX2VEC_TEST_KILL_AFTER_EPOCH="1"))
    assert all(agent.returncode != 0 for agent in crashed), [a.stdout[-3000:] for a in crashed]
    latest = torch.load(fold(env) / "checkpoint_latest.pth", map_location="cpu", weights_only=True)
    assert latest["vox2vec"] == {"seed": 0, "iteration": 2, "epoch": 1, "channel_names": {"0": "CT"}}
    assert not (fold(env) / "checkpoint_final.pth").exists()

    resumed = two_nodes(env, "--c")
    assert all(agent.returncode == 0 for agent in resumed), [a.stdout[-6000:] for a in resumed]
    assert sorted("rank 0 of 2 (torchrun)" in a.stdout for a in resumed) == [False, True]
    final = torch.load(fold(env) / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert final["vox2vec"] == expected["vox2vec"] == {"seed": 0, "iteration": 6, "epoch": 3,
                                                        "channel_names": {"0": "CT"}}
    losses, expected_losses = final["logging"]["train_losses"], expected["logging"]["train_losses"]
    assert len(losses) == 3 and np.allclose(losses, expected_losses, rtol=1e-12, atol=0)
    assert losses[0] == latest["logging"]["train_losses"][0]  # the first epoch is the crashed run's
    weights = final["network_weights"]
    assert set(weights) == set(expected["network_weights"])
    differences = {}
    for key, value in expected["network_weights"].items():
        if value.is_floating_point():
            differences[key] = (weights[key] - value).abs().max().item() / max(value.abs().max().item(), 1e-3)
        else:
            assert torch.equal(weights[key], value), key
    print(f"two torchrun nodes (killed, resumed) against one process, float64: largest weight difference "
          f"{max(differences.values()):.1e} of the tensor's largest weight, largest loss difference "
          f"{max(abs(a - b) for a, b in zip(losses, expected_losses)):.1e}")
    assert max(differences.values()) < 1e-8, max(differences, key=differences.get)
    logs = sorted(fold(env).glob("training_log_*.txt"))
    assert "vox2vec pre-training seed: 0 (from the checkpoint)" in logs[-1].read_text()
