"""nnU-Net plans with its own U-Nets, as small as ``nnUNetPlannerResEncM`` makes them for the phantoms.

``TINY_RESENC`` is the architecture ``nnUNetv2_plan_and_preprocess -pl nnUNetPlannerResEncM
-gpu_memory_target 0.02 -overwrite_target_spacing 10 8 8`` plans for the 10 x 8 x 8 mm phantoms
(3 stages of 32, 64, 128 features; the last stride keeps the slice axis).
"""
from __future__ import annotations

import copy

TINY_RESENC = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
    "arch_kwargs": {"n_stages": 3, "features_per_stage": [32, 64, 128], "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]],
                    "n_blocks_per_stage": [1, 3, 4], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}

TINY_PLAIN = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {"n_stages": 3, "features_per_stage": [8, 16, 24], "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                    "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}

CT_PROPERTIES = {"0": {"max": 295.0, "mean": 92.76, "median": 63.0, "min": 0.0, "percentile_00_5": 15.0,
                       "percentile_99_5": 268.0, "std": 69.73}}
"""CTNormalization's numbers, as nnU-Net's fingerprint of the phantoms gives them."""


def unet_plans(dataset_name: str, architecture: dict = TINY_RESENC, patch_size=(12, 20, 24),
               normalization: str = "CTNormalization", configuration: str = "3d_fullres",
               plans_name: str = "nnUNetResEncUNetTinyPlans") -> dict:
    """A plans dict with one configuration of nnU-Net's own network."""
    return {
        "dataset_name": dataset_name, "plans_name": plans_name,
        "original_median_spacing_after_transp": [10.0, 8.0, 8.0], "original_median_shape_after_transp": [18, 32, 42],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {configuration: {
            "data_identifier": f"{plans_name}_{configuration}", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch_size), "median_image_size_in_voxels": [18.0, 32.0, 42.0],
            "spacing": [10.0, 8.0, 8.0], "normalization_schemes": [normalization], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": copy.deepcopy(architecture), "batch_dice": False}},
        "experiment_planner_used": "nnUNetPlannerResEncM", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": copy.deepcopy(CT_PROPERTIES),
    }
