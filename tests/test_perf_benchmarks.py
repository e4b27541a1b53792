"""The scale benchmarks compare like with like and run (tiny settings; figures are not checked)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vox2vec_nnunet.loss import info_nce
from vox2vec_nnunet.network.vox2vec import Vox2Vec
from vox2vec_nnunet.perf import pretrain_data_benchmark, pretrain_step_benchmark
from vox2vec_nnunet.perf.augmenter_order_benchmark import write_cases
from vox2vec_nnunet.perf.pretrain_step_benchmark import ReferenceStyleModel, dense_info_nce, make_batch


def test_reference_style_step_computes_our_model() -> None:
    """The reference-style model is our model with our weights: same embeddings and loss."""
    torch.manual_seed(0)
    ours = Vox2Vec(1, base_channels=4, num_levels=3)
    reference = ReferenceStyleModel(ours)
    patches, positions = make_batch(2, 32, (8, 16, 16))
    assert positions.shape == (2 * 2 * 32, 4) and positions[:64, 0].max() == 1 and positions[64:, 0].min() == 2
    z_ours, z_reference = ours(patches, positions), reference(patches, positions)
    torch.testing.assert_close(z_reference, z_ours, rtol=1e-4, atol=1e-5)
    assert info_nce(*z_ours.chunk(2)).item() == pytest.approx(dense_info_nce(*z_reference.chunk(2)).item(), rel=1e-5)


def test_step_benchmark_runs(capsys: pytest.CaptureFixture) -> None:
    pretrain_step_benchmark.main(["--base_channels", "4", "--num_levels", "3", "--volumes", "1", "--positions", "16",
                                  "--patch", "8", "16", "16", "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "threads=1" in out and "ratio ours / reference_style" in out


@pytest.mark.slow  # worker processes that import torch and nnU-Net
def test_data_benchmark_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_cases(tmp_path, 3, (12, 40, 40), (8, 16, 16))
    pretrain_data_benchmark.main(["--folder", str(tmp_path), "--volumes", "2", "--positions", "16", "--patch", "8",
                                  "16", "16", "--batches", "2", "--workers", "1", "--step_seconds", "0.15"])
    out = capsys.readouterr().out
    assert "3 cases" in out and "through the trainer's ordered augmenter" in out and "GPU node verdict" in out
