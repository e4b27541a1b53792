"""``Vox2VecPretrainTrainer_UNet``: vox2vec pre-training of the network of an nnU-Net plans configuration.

    vox2vec_nnunet_prepare_pretraining -d 17 3 7 -o 901 --plans nnUNetResEncUNetMPlans \\
        --configuration 3d_fullres --plans_dataset 17
    nnUNetv2_train 901 3d_fullres all -p nnUNetResEncUNetMPlans -tr Vox2VecPretrainTrainer_UNet
    nnUNetv2_train 17 3d_fullres 0 -p nnUNetResEncUNetMPlans -tr nnUNetTrainer_Vox2VecFineTune \\
        -pretrained_weights .../fold_all/checkpoint_final.pth

:class:`Vox2VecPretrainTrainer` with one change, the network: the configuration's U-Net
(``ResidualEncoderUNet`` or ``PlainConvUNet``), built by ``nnUNetTrainer.build_network_architecture``
exactly as ``nnUNetv2_train`` builds it for segmentation, read out at the decoder stages and the
bottleneck (:class:`vox2vec_nnunet.network.unet.Vox2VecUNet`, where the choice and the
differences from the paper are explained). Sampler, augmentation, InfoNCE, optimiser, budget,
seeds, snapshots and checkpoints are the FPN trainer's (paper Sect. 3, 4.1).

The plans come from ``vox2vec_nnunet_prepare_pretraining --plans``: the labeled dataset's
configuration with its CT data kept in HU. The augmentation's window ends where that plans'
``CTNormalization`` ends (:meth:`IntensityAugmentation.for_ct_normalization`), so the network
sees during pre-training the intensities it sees during fine-tuning and inference; channels the
plans z-score are stored z-scored, with the normalised-units augmentation.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from vox2vec_nnunet.channels import CT_NORMALIZATION, HU_KEPT, ZSCORE_NORMALIZATION
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.network.unet import Vox2VecUNet
from vox2vec_nnunet.pretraining.augmentation import ChannelAugmentation
from vox2vec_nnunet.pretraining.prepare import TARGET_NORMALIZATION_KEY
from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer


class Vox2VecPretrainTrainer_UNet(Vox2VecPretrainTrainer):
    """vox2vec pre-training of nnU-Net's own U-Net of the plans; see the module docstring."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        entry = self.configuration_manager.configuration
        stored = {CT_NORMALIZATION: HU_KEPT, ZSCORE_NORMALIZATION: ZSCORE_NORMALIZATION}
        target = entry.get(TARGET_NORMALIZATION_KEY) or []
        if not target or any(t not in stored for t in target) or \
                entry.get("normalization_schemes") != [stored[t] for t in target]:
            raise Vox2VecError(f"plans '{self.plans_manager.plans_name}' {configuration} of "
                               f"{self.plans_manager.dataset_name}: not pre-training data for nnU-Net's own network "
                               f"(CT kept in HU, the labeled plans' normalization recorded). Prepare it with "
                               f"vox2vec_nnunet_prepare_pretraining --plans PLANS --configuration {configuration} "
                               f"--plans_dataset LABELED_DATASET")

    def channel_augmentation(self) -> ChannelAugmentation:
        """The FPN trainer's, with each CT channel's window ending where the plans' CTNormalization ends."""
        schemes = self.configuration_manager.normalization_schemes
        properties = self.plans_manager.foreground_intensity_properties_per_channel
        ct = [self.augmentation.for_ct_normalization(properties[str(c)]) if scheme == HU_KEPT else self.augmentation
              for c, scheme in enumerate(schemes)]
        return ChannelAugmentation.for_stored_schemes(schemes, ct, self.normalized_augmentation)

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision=False)
        try:
            return Vox2VecUNet(unet, cls.projection_dim)
        except ValueError as error:
            raise Vox2VecError(f"plans '{plans_manager.plans_name}' of {plans_manager.dataset_name}: {error}") from None
