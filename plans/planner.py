"""``Vox2VecPlanner``: nnU-Net's experiment planner, reduced to the vox2vec configuration.

It keeps what nnU-Net's planner derives from a dataset (fingerprint, image reader, median
spacing and shape) and replaces the U-Net planning by the fixed vox2vec settings
(``builder.py``). The slice axis (largest median spacing) is put first, so the plans' spacing
and patch are (slice, in-plane, in-plane).

Channels: a CT channel gets the paper's HU window (Sect. 4.2); every other channel the
normalisation nnU-Net's planner chooses for it, decided by nnU-Net's own planner method
(``determine_normalization_scheme_and_whether_mask_is_used_for_norm``): the scheme by channel
name, and ``use_mask_for_norm`` from the fingerprint (z-scoring inside the nonzero region when
cropping to it shrinks the median case below 3/4, as for skull-stripped brains). The same
fingerprint therefore gives the same normalisation as ``nnUNetv2_plan_and_preprocess``, and
non-CT channels keep the fingerprint's intensity properties.
"""
from __future__ import annotations

import shutil
from os.path import join

import numpy as np
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from vox2vec_nnunet.channels import channel_names
from vox2vec_nnunet_plans.builder import (DEFAULT_PLANS_NAME, SEGMENTATION_CONFIGURATION, ConfigurationSettings,
                                          build_plans, default_settings, slice_axis_first)


class Vox2VecPlanner(ExperimentPlanner):
    """Writes ``{plans_name}.json`` with the ``3d_vox2vec`` configuration for a labeled dataset."""

    def __init__(self, dataset_name_or_id: str | int, plans_name: str = DEFAULT_PLANS_NAME,
                 settings: ConfigurationSettings | None = None) -> None:
        super().__init__(dataset_name_or_id, plans_name=plans_name)
        self.settings = settings or default_settings(SEGMENTATION_CONFIGURATION)

    def determine_transpose(self) -> tuple[list[int], list[int]]:
        forward = slice_axis_first(np.median(self.dataset_fingerprint["spacings"], 0))
        return forward, [int(i) for i in np.argsort(forward)]

    def plan_experiment(self) -> dict:
        transpose_forward, _ = self.determine_transpose()
        spacing = np.median(self.dataset_fingerprint["spacings"], 0)[transpose_forward]
        shape = np.median(self.dataset_fingerprint["shapes_after_crop"], 0)[transpose_forward]
        _, use_mask_for_norm = self.determine_normalization_scheme_and_whether_mask_is_used_for_norm()
        plans = build_plans(
            dataset_name=self.dataset_name, plans_name=self.plans_identifier,
            configurations={SEGMENTATION_CONFIGURATION: self.settings},
            image_reader_writer=self.determine_reader_writer().__name__,
            transpose_forward=transpose_forward,
            channel_names=list(channel_names(self.dataset_json, self.raw_dataset_folder).values()),
            original_median_spacing_after_transp=spacing, original_median_shape_after_transp=shape,
            use_mask_for_norm=use_mask_for_norm,
            intensity_properties=self.dataset_fingerprint["foreground_intensity_properties_per_channel"])
        self.plans = plans
        self.save_plans(plans)
        # nnU-Net's trainers read dataset.json from the preprocessed folder, as its planner leaves it.
        shutil.copy(join(self.raw_dataset_folder, "dataset.json"),
                    join(str(nnUNet_preprocessed), self.dataset_name, "dataset.json"))
        return plans
