"""The two sizes of the GPU acceptance run: :data:`GPU` (the paper's pre-training step on
clinical-size scans) and :data:`CPU_SMOKE` (the same parts, scaled down so that a 2-core CPU
runs all of them in about two minutes; the test suite runs it)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field


def _processes() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class Scale:
    """Everything the figures of one run depend on (written to the JSON as ``settings``)."""

    name: str
    device: str
    # data: clinical phantoms (vox2vec_nnunet_phantoms --clinical), labeled cases also pre-train
    labeled: int
    unlabeled: int
    slices: tuple[int, int]
    slice_mm: tuple[float, ...] | None
    """None: the clinical thin/thick slice spacings."""
    downsample: int
    processes: int
    """-np of the data commands."""
    # the vox2vec FPN, its pre-training data and plans (None: the paper's, from the plans template)
    spacing: tuple[float, float, float] | None
    patch: tuple[int, int, int]
    base_channels: int
    num_levels: int
    segmentation_batch_size: int | None
    num_positions: int
    """m of the pre-training trainers; scans with fewer body voxels are skipped by the preparation."""
    # part 1
    step_volumes: int
    step_repeats: int
    matmul_size: int
    matmul_repeats: int
    # part 2
    loader_workers: tuple[int, ...]
    # parts 3 and 4
    training_workers: int
    """nnUNet_n_proc_DA of the training runs."""
    pretrain_trainer: str
    finetune_trainer: str
    unet_planner_options: tuple[str, ...]
    unet_plans: str
    unet_pretrain_trainer: str
    unet_finetune_trainer: str
    # time limits, seconds
    time_limits: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 480.0

    def fpn_options(self) -> list[str]:
        """The FPN options of ``vox2vec_nnunet_prepare_pretraining`` and ``vox2vec_nnunet_plan``."""
        options = ["--patch_size", *map(str, self.patch), "--base_channels", str(self.base_channels),
                   "--num_levels", str(self.num_levels)]
        if self.spacing is not None:
            options = ["--spacing", *map(str, self.spacing), *options]
        return options


GPU = Scale(
    name="gpu", device="cuda",
    labeled=2, unlabeled=4, slices=(100, 160), slice_mm=None, downsample=1, processes=_processes(),
    spacing=None, patch=(32, 128, 128), base_channels=16, num_levels=6, segmentation_batch_size=None,
    num_positions=1000,
    step_volumes=10, step_repeats=5, matmul_size=8192, matmul_repeats=20,
    loader_workers=(2, 6, 12), training_workers=max(1, min(12, (os.cpu_count() or 2) - 2)),
    pretrain_trainer="Vox2VecPretrainTrainer_Acceptance", finetune_trainer="Vox2VecTrainer_FineTune_Acceptance",
    unet_planner_options=("-pl", "nnUNetPlannerResEncM", "-overwrite_target_spacing", "2", "1", "1",
                          "-overwrite_plans_name", "nnUNetResEncUNetMAcceptancePlans"),
    unet_plans="nnUNetResEncUNetMAcceptancePlans",
    unet_pretrain_trainer="Vox2VecPretrainTrainer_UNet_Acceptance",
    unet_finetune_trainer="nnUNetTrainer_Vox2VecFineTune_Acceptance",
    time_limits={"data": 150, "step": 90, "loader": 90, "fpn": 200, "unet": 240}, total_seconds=480,
)
"""The paper's step (FPN 16 x 6, n = 10 x m = 1,000, 32 x 128 x 128 at 1 x 1 x 2 mm) on 6
clinical scans of 512 x 512 pixels and 100-160 slices; nnU-Net's ResEnc M planner (3d_fullres) at
the FPN's 1 x 1 x 2 mm, where its sliding window over a clinical scan stays within the run's time."""

CPU_SMOKE = Scale(
    name="cpu_smoke", device="cpu",
    labeled=2, unlabeled=2, slices=(100, 100), slice_mm=(3.0,), downsample=4, processes=1,
    spacing=(12.0, 6.0, 6.0), patch=(8, 32, 32), base_channels=4, num_levels=3, segmentation_batch_size=2,
    num_positions=64,
    step_volumes=2, step_repeats=2, matmul_size=512, matmul_repeats=3,
    loader_workers=(1, 2), training_workers=1,
    pretrain_trainer="Vox2VecPretrainTrainer_AcceptanceSmoke",
    finetune_trainer="Vox2VecTrainer_FineTune_AcceptanceSmoke",
    unet_planner_options=("-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "0.05",
                          "-overwrite_target_spacing", "12", "8", "8", "-overwrite_plans_name",
                          "nnUNetResEncUNetTinyPlans"),
    unet_plans="nnUNetResEncUNetTinyPlans",
    unet_pretrain_trainer="Vox2VecPretrainTrainer_UNet_AcceptanceSmoke",
    unet_finetune_trainer="nnUNetTrainer_Vox2VecFineTune_AcceptanceSmoke",
    time_limits={"data": 300, "step": 300, "loader": 300, "fpn": 400, "unet": 400}, total_seconds=1200,
)
"""4 clinical scans drawn as a scanner writes them (100 slices of 3 mm, 512 x 512 pixels), sampled
4x coarser (25 x 128 x 128); FPN 4 x 3, patch 8 x 32 x 32 at 12 x 6 x 6 mm, n = 2 x m = 64; a
ResEnc U-Net of 3 stages at 12 x 8 x 8 mm (nnU-Net's ResEnc M planner with a 0.05 GB memory
target)."""
