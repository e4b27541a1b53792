"""Plans for vox2vec, built from the template ``vox2vec_plans_template.json``.

Two configurations exist (paper Sect. 3.1, 4.1, 4.2):

* ``3d_vox2vec``: segmentation. 1x1x2 mm, patch 128x128x32, batch 7, the fixed HU window
  (-1350, 1000) -> [0, 1], FPN + non-linear head.
* ``3d_vox2vec_pretrain``: pre-training data. Same spacing and patch, intensities kept in HU
  (``NoNormalization``): the random HU window is part of the augmentation (Sect. 3.1).

The HU window is nnU-Net's own ``CTNormalization`` (clip to the percentiles, subtract the
mean, divide by the std) with the plans' intensity properties set so that it computes
``clip(hu, lo, hi) - lo) / (hi - lo)``. Because it lives in the plans file,
``nnUNetv2_predict`` reproduces it with no extra step.

The window is what a CT channel gets (``ct_normalization_scheme``). Every other channel gets
the normalisation nnU-Net chooses for its name (:mod:`vox2vec_nnunet.channels`; per-image
``ZScoreNormalization`` for MR names), in both configurations, with the intensity properties
and ``use_mask_for_norm`` the caller passes (the planner: nnU-Net's own decisions), so
pre-training data and segmentation data of such a channel are normalised alike.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib import resources
from typing import Mapping, Sequence

import numpy as np

from vox2vec_nnunet.channels import is_ct, nnunet_normalization
from vox2vec_nnunet_plans.architecture import fpn_architecture

SEGMENTATION_CONFIGURATION = "3d_vox2vec"
PRETRAINING_CONFIGURATION = "3d_vox2vec_pretrain"
DEFAULT_PLANS_NAME = "Vox2VecPlans"


def load_template() -> dict:
    """The plan template shipped with the package."""
    return json.loads(resources.files("vox2vec_nnunet_plans").joinpath("vox2vec_plans_template.json").read_text())


@dataclass(frozen=True)
class ConfigurationSettings:
    """What a vox2vec configuration fixes; spatial tuples are slice axis first."""

    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    batch_size: int
    base_channels: int
    num_levels: int
    head: str
    ct_normalization_scheme: str
    """What a CT channel gets; other channels get nnU-Net's choice for their name."""
    preprocessor_name: str = "DefaultPreprocessor"
    batch_dice: bool = False

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers (slice axis first), got {self.spacing}")
        if len(self.patch_size) != 3 or any(int(p) < 1 for p in self.patch_size):
            raise ValueError(f"patch size must be three positive integers (slice axis first), got {self.patch_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        if self.base_channels < 1 or self.num_levels < 2:
            raise ValueError(f"need base_channels >= 1 and num_levels >= 2, got {self.base_channels}, "
                             f"{self.num_levels}")

    def with_overrides(self, spacing: Sequence[float] | None = None, patch_size: Sequence[int] | None = None,
                       batch_size: int | None = None, base_channels: int | None = None,
                       num_levels: int | None = None) -> "ConfigurationSettings":
        """A copy with the given (non-None) values replaced."""
        changes = {k: v for k, v in dict(
            spacing=None if spacing is None else tuple(float(s) for s in spacing),
            patch_size=None if patch_size is None else tuple(int(p) for p in patch_size),
            batch_size=batch_size, base_channels=base_channels, num_levels=num_levels).items() if v is not None}
        return replace(self, **changes)


def default_settings(configuration: str) -> ConfigurationSettings:
    """The paper's settings of a configuration, from the template."""
    entries = load_template()["configurations"]
    if configuration not in entries:
        raise KeyError(f"No vox2vec configuration {configuration!r}; known: {sorted(entries)}")
    entry = dict(entries[configuration])
    entry["spacing"] = tuple(entry["spacing"])
    entry["patch_size"] = tuple(entry["patch_size"])
    return ConfigurationSettings(**entry)


def hu_window_intensity_properties(window: Sequence[float] | None = None) -> dict:
    """Intensity properties that make ``CTNormalization`` map ``window`` linearly onto [0, 1]."""
    low, high = window if window is not None else load_template()["hu_window"]
    return {"mean": float(low), "std": float(high - low), "percentile_00_5": float(low),
            "percentile_99_5": float(high), "min": float(low), "max": float(high),
            "median": float(low + high) / 2}


def normalization_schemes(channel_names: Sequence[str], settings: ConfigurationSettings) -> list[str]:
    """Each channel's scheme: the configuration's CT scheme for CT, else nnU-Net's choice for its name."""
    return [settings.ct_normalization_scheme if is_ct(name) else nnunet_normalization(name) for name in channel_names]


def configuration_entry(name: str, plans_name: str, settings: ConfigurationSettings, channel_names: Sequence[str],
                        use_mask_for_norm: Sequence[bool], median_image_size_in_voxels: Sequence[float]) -> dict:
    """One ``configurations`` entry of an nnU-Net plans file."""
    return {
        "data_identifier": f"{plans_name}_{name}",
        "preprocessor_name": settings.preprocessor_name,
        "batch_size": settings.batch_size,
        "patch_size": [int(p) for p in settings.patch_size],
        "median_image_size_in_voxels": [float(s) for s in median_image_size_in_voxels],
        "spacing": [float(s) for s in settings.spacing],
        "normalization_schemes": normalization_schemes(channel_names, settings),
        "use_mask_for_norm": [bool(u) for u in use_mask_for_norm],
        **load_template()["resampling"],
        **{k: v for k, v in load_template()["resampling_overrides"].get(name, {}).items() if k != "description"},
        "architecture": fpn_architecture(settings.head, settings.base_channels, settings.num_levels),
        "batch_dice": settings.batch_dice,
    }


def build_plans(dataset_name: str, plans_name: str, configurations: dict[str, ConfigurationSettings],
                image_reader_writer: str, transpose_forward: Sequence[int], channel_names: Sequence[str],
                original_median_spacing_after_transp: Sequence[float],
                original_median_shape_after_transp: Sequence[float],
                use_mask_for_norm: Sequence[bool] | None = None,
                intensity_properties: Mapping[str, dict] | None = None) -> dict:
    """A complete nnU-Net plans dict holding only vox2vec configurations.

    ``channel_names`` in channel order (``dataset.json``). A CT channel's intensity properties
    are the HU window; another channel's are ``intensity_properties[str(c)]`` (nnU-Net's
    fingerprint) when given, else empty (its z-scoring needs none). ``use_mask_for_norm``:
    per channel, default False.
    """
    transpose_forward = [int(a) for a in transpose_forward]
    transpose_backward = [int(np.argsort(transpose_forward)[i]) for i in range(3)]
    original_spacing = np.asarray(original_median_spacing_after_transp, dtype=float)
    original_shape = np.asarray(original_median_shape_after_transp, dtype=float)
    channel_names = [str(n) for n in channel_names]
    use_mask_for_norm = [False] * len(channel_names) if use_mask_for_norm is None else list(use_mask_for_norm)
    if len(use_mask_for_norm) != len(channel_names):
        raise ValueError(f"use_mask_for_norm needs one value per channel ({len(channel_names)}), got "
                         f"{use_mask_for_norm}")
    entries = {}
    for name, settings in configurations.items():
        median_after = np.round(original_shape * original_spacing / np.asarray(settings.spacing))
        entries[name] = configuration_entry(name, plans_name, settings, channel_names, use_mask_for_norm,
                                            median_after)
    properties = {str(c): hu_window_intensity_properties() if is_ct(n) else
                  dict((intensity_properties or {}).get(str(c), {})) for c, n in enumerate(channel_names)}
    return {
        "dataset_name": dataset_name,
        "plans_name": plans_name,
        "original_median_spacing_after_transp": [float(s) for s in original_spacing],
        "original_median_shape_after_transp": [int(round(s)) for s in original_shape],
        "image_reader_writer": image_reader_writer,
        "transpose_forward": transpose_forward,
        "transpose_backward": transpose_backward,
        "configurations": entries,
        "experiment_planner_used": "Vox2VecPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": properties,
    }


def slice_axis_first(spacing: Sequence[float]) -> list[int]:
    """``transpose_forward`` that puts the slice axis first, keeping the others' order.

    The slice axis is the reader's first axis (z for nnU-Net's SimpleITK and nibabel readers)
    unless another axis is more than twice as coarse (thick slices stored in another
    orientation). The coarsest axis alone would be wrong for thin-slice CT, whose slices are
    often thinner than its pixels are wide (0.625 mm slices of 0.75 mm pixels): an in-plane
    axis would then get the 2 mm spacing of the plans.
    """
    spacing = np.asarray(spacing, dtype=float)
    coarsest = int(np.argmax(spacing))
    slice_axis = coarsest if spacing[coarsest] > 2.0 * spacing[0] else 0
    return [slice_axis] + [a for a in range(3) if a != slice_axis]
