"""The GPU acceptance command at its CPU smoke size: every part runs and the JSON holds every figure.

The figures themselves are CPU figures (the claims about speed are GPU claims and are not
asserted here); what is asserted is that each part ran the real commands to the end: the
torchrun pre-training was killed after its first checkpoint and resumed to the last iteration,
both arms fine-tuned from their pre-trained weights and predicted the scan.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vox2vec_nnunet.perf.acceptance_processes import Commands, Deadline, PartTimedOut, kill_tree, process_tree
from vox2vec_nnunet.perf.acceptance_scale import CPU_SMOKE, GPU
from vox2vec_nnunet.perf.acceptance_step import datasheet_bf16_tflops
from vox2vec_nnunet.perf.gpu_acceptance import PARTS, choose_scale


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_datasheet_peak_is_found_by_device_name() -> None:
    assert datasheet_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert datasheet_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert datasheet_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert datasheet_bf16_tflops("NVIDIA L40S") == 362.0
    assert datasheet_bf16_tflops("NVIDIA L4") == 121.0
    assert datasheet_bf16_tflops("NVIDIA A10") == 125.0
    assert datasheet_bf16_tflops("NVIDIA A10G") is None  # not the A10: measured instead
    assert datasheet_bf16_tflops("NVIDIA GeForce RTX 4090") is None


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie is dead
    except FileNotFoundError:
        return True


def test_kill_tree_reaches_a_grandchild_in_a_session_of_its_own() -> None:
    """As torchrun starts its workers: the grandchild is in another session, and still killed."""
    grandchild = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; " \
                 "time.sleep(60)'], start_new_session=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", grandchild])
    deadline = time.monotonic() + 30
    while len(process_tree(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = process_tree(process.pid)
    assert len(tree) == 2
    assert kill_tree(process) == 2
    deadline = time.monotonic() + 10
    while not _gone(tree[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(tree[1])


def test_a_command_past_its_deadline_is_killed_with_a_clear_line(tmp_path: Path) -> None:
    commands = Commands({}, tmp_path)
    begin = time.monotonic()
    with pytest.raises(PartTimedOut, match="`sleeper` was still running at the part's time limit"):
        commands.run("sleeper", ["sleep", "30"], Deadline(0.5))
    assert time.monotonic() - begin < 10 and commands.seconds["sleeper"] < 10


def test_the_acceptance_trainers_pre_train_at_the_scales_of_their_runs() -> None:
    from vox2vec_nnunet.training import acceptance_variants as variants

    for scale in (GPU, CPU_SMOKE):
        trainer = getattr(variants, scale.pretrain_trainer)
        assert (trainer.num_volumes, trainer.num_positions) == (scale.step_volumes, scale.num_positions)
        assert getattr(variants, scale.unet_pretrain_trainer).num_positions <= scale.num_positions
    assert (GPU.step_volumes, GPU.num_positions, GPU.patch, GPU.base_channels, GPU.num_levels) == \
        (10, 1000, (32, 128, 128), 16, 6)  # the paper's step (Sect. 4.1)


def test_without_cuda_the_run_scales_down_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    scale, reason = choose_scale(cpu_smoke=False)
    assert scale is CPU_SMOKE and reason.startswith("no CUDA device: scaled down")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert choose_scale(cpu_smoke=False) == (GPU, None)
    assert choose_scale(cpu_smoke=True)[0] is CPU_SMOKE


@pytest.mark.slow
def test_cpu_smoke_runs_every_part_and_writes_every_figure(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "vox2vec_nnunet.perf.gpu_acceptance", "-o", str(tmp_path),
                             "--cpu_smoke"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    out = result.stdout
    assert "scaled down to the CPU smoke size" in out and "SUMMARY:" in out and "part   | status" in out
    report = json.loads((tmp_path / "gpu_acceptance.json").read_text())
    print(out[out.index("GPU acceptance (cpu_smoke"):])
    assert report["scale"] == "cpu_smoke" and report["settings"]["name"] == "cpu_smoke"
    parts = report["parts"]
    assert list(parts) == list(PARTS)
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(PARTS, "ok"), \
        {name: part["message"] for name, part in parts.items()}
    assert all(positive(part["seconds"]) and all(map(positive, part["command_seconds"].values()))
               for part in parts.values())

    data = parts["data"]
    assert data["cases"] == data["prepared_cases"] == CPU_SMOKE.labeled + CPU_SMOKE.unlabeled
    assert data["scan_shapes_zyx"] == [[25, 128, 128]] * data["cases"]  # 100 x 512 x 512, 4x coarser

    step = parts["step"]
    for arm in ("ours", "reference_style"):
        figures = step["arms"][arm]
        assert figures["status"] == "ok"
        assert all(positive(figures[k]) for k in ("ms_per_iteration", "flops_per_iteration", "achieved_tflops"))
        assert figures["peak_step_memory_bytes"] >= 0
    flops = [step["arms"][arm]["flops_per_iteration"] for arm in ("ours", "reference_style")]
    assert abs(flops[0] - flops[1]) < 0.05 * flops[1]  # the same model and batch: nearly the same FLOPs
    assert all(positive(step[k]) for k in ("ratio_ours_to_reference", "share_of_peak", "peak_bf16_tflops",
                                           "measured_bf16_matmul_tflops"))
    assert step["peak_source"] == "measured bf16 matmul" and step["datasheet_bf16_tflops"] is None

    loader = parts["loader"]
    assert list(loader["workers"]) == [str(w) for w in CPU_SMOKE.loader_workers]
    assert all(positive(r["batches_per_second"]) for r in loader["workers"].values())
    assert (loader["volumes"], loader["positions"], loader["patch"]) == \
        (CPU_SMOKE.step_volumes, CPU_SMOKE.num_positions, list(CPU_SMOKE.patch))
    assert loader["augmentation"] == "in the CPU workers"

    pretrain = parts["fpn"]["pretrain"]
    assert pretrain["killed_at_iteration"] == 3 and pretrain["final_iteration"] == 12  # 4 epochs of 3
    assert pretrain["killed_processes"] >= 3  # torchrun, the trainer, its data worker
    assert len(pretrain["losses"]) == 4 and all(map(math.isfinite, pretrain["losses"]))
    assert positive(pretrain["iterations_per_second"])
    assert (pretrain["augmentation"], pretrain["backbone_autocast"]) == ("the CPU workers", "off (float32)")
    unet_pretrain = parts["unet"]["pretrain"]
    assert unet_pretrain["iterations"] == 6 and all(map(math.isfinite, unet_pretrain["losses"]))
    for arm in ("fpn", "unet"):
        finetune, predict = parts[arm]["finetune"], parts[arm]["predict"]
        assert finetune["backbone_source"] == "pretrained" and 0.0 <= finetune["pseudo_dice"] <= 1.0
        assert positive(predict["seconds_per_scan"]) and predict["scan_shape_zyx"] == [25, 128, 128]
        assert set(predict["labels_present"]) <= set(range(6))

    claims = {c["claim"]: c for c in report["claims"]}
    assert len(claims) == 7 and all(c["met"] in (True, False) and c["figure"] for c in claims.values())
    for claim in ("torchrun pre-training killed part-way resumes with --c and finishes",
                  "the pre-trained FPN fine-tunes and predicts a clinical-size scan",
                  "the ResEnc U-Net pre-trains, fine-tunes and predicts a clinical-size scan",
                  "the smoke-size step (ours) runs on the device"):
        assert claims[claim]["met"] is True, claims[claim]
    assert positive(report["total_seconds"])
