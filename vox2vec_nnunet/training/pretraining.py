"""``Vox2VecPretrainTrainer``: contrastive voxel-level pre-training run by ``nnUNetv2_train``.

    nnUNetv2_train 900 3d_vox2vec_pretrain all -p Vox2VecPlans -tr Vox2VecPretrainTrainer

Paper Sect. 3.1-3.3 and 4.1 (SPEC section 1): per iteration, ``num_volumes`` (n = 10)
different volumes each give two overlapping patches and ``num_positions`` (m = 1000) positive
voxel pairs; the patches are intensity-augmented, both views go through the FPN in one batch,
each sampled voxel's 1008-d representation is projected to the 128-d unit sphere, and InfoNCE
(tau = 0.1) contrasts every pair against all other 2N - 2 voxels of the batch. Adam, lr 3e-4,
no weight decay, gradient-norm clip 1.0, 100,000 iterations (``num_epochs`` x
``num_iterations_per_epoch`` = 400 x 250, so a subclass shortens it the nnU-Net way).

Data flow: background workers (nnU-Net's ``NonDetMultiThreadedAugmenter``) load cases and
sample pairs; the augmentation runs where it is cheapest, on the GPU in the training step when
there is one, otherwise in the CPU workers, so the model does not wait for data. On CUDA the
backbone runs in bfloat16 autocast with projector and loss in float32.

Under ``-num_gpus`` (DDP) the embeddings of all ranks are gathered with gradients, so every
negative of every rank counts and the gradients equal single-process training on the union
of the ranks' batches (:func:`vox2vec_nnunet.distributed.gather_with_grad`).

There is no segmentation validation. Each epoch logs the loss, the mean cosine similarity of
positive and of negative pairs and the learning rate to the training log and ``progress.png``.
Checkpoints are nnU-Net's format (``--c`` resumes), written atomically, with the weights on the
CPU so that ``-pretrained_weights`` loads them on any machine.
"""
from __future__ import annotations

from time import time

import matplotlib
import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.logging.nnunet_logger import LocalLogger
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.distributed import gather_with_grad
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.loss import info_nce, pair_cosine_similarities
from vox2vec_nnunet.network.vox2vec import Vox2Vec
from vox2vec_nnunet.nnunet_env import resolve_device
from vox2vec_nnunet.pretraining.augmentation import IntensityAugmentation
from vox2vec_nnunet.pretraining.dataloader import Vox2VecPairDataLoader
from vox2vec_nnunet.training.common import unwrap

matplotlib.use("agg")


class PretrainingLogger(LocalLogger):
    """nnU-Net's local logger with the pre-training curves instead of Dice."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__(verbose)
        self.my_fantastic_logging = {key: [] for key in (
            "train_losses", "positive_cosine", "negative_cosine", "lrs", "epoch_start_timestamps",
            "epoch_end_timestamps")}

    def plot_progress_png(self, output_folder: str) -> None:
        import matplotlib.pyplot as plt

        log = self.my_fantastic_logging
        epochs = min(len(v) for v in log.values())
        x = np.arange(epochs)
        fig, axes = plt.subplots(3, 1, figsize=(12, 14))
        axes[0].plot(x, log["train_losses"][:epochs], color="b", label="InfoNCE loss")
        axes[0].set_ylabel("loss")
        axes[1].plot(x, log["positive_cosine"][:epochs], color="g", label="positive pairs")
        axes[1].plot(x, log["negative_cosine"][:epochs], color="r", label="negative pairs")
        axes[1].set_ylabel("mean cosine similarity")
        axes[2].plot(x, log["lrs"][:epochs], color="k", label="learning rate")
        axes[2].set_ylabel("learning rate")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.legend(loc="best")
        fig.suptitle("vox2vec pre-training")
        fig.tight_layout()
        fig.savefig(f"{output_folder}/progress.png")
        plt.close(fig)


class AugmentInWorkers:
    """batchgenerators transform: the intensity augmentation, run in the CPU data workers."""

    def __init__(self, augmentation: IntensityAugmentation) -> None:
        self.augmentation = augmentation
        self.generator: torch.Generator | None = None

    def __call__(self, **batch) -> dict:
        if self.generator is None:  # first call inside this worker: one thread, own random stream
            torch.set_num_threads(1)
            self.generator = torch.Generator().manual_seed(int(np.random.randint(2 ** 62)))
        for key in ("patches1", "patches2"):
            batch[key] = self.augmentation(batch[key], self.generator)
        batch["augmented"] = True
        return batch


class Vox2VecPretrainTrainer(nnUNetTrainer):
    """vox2vec pre-training (paper Sect. 3, 4.1); see the module docstring."""

    num_volumes: int = 10
    """n: different volumes per iteration (paper Sect. 3.1); under DDP split over the ranks."""
    num_positions: int = 1000
    """m: positive pairs per volume (paper Sect. 3.1)."""
    temperature: float = 0.1
    projection_dim: int = 128
    grad_clip_norm: float = 1.0
    augmentation: IntensityAugmentation = IntensityAugmentation()

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, resolve_device(device))
        self.initial_lr = 3e-4
        self.weight_decay = 0.0
        self.num_epochs = 400
        self.num_iterations_per_epoch = 250
        self.num_val_iterations_per_epoch = 0
        self.enable_deep_supervision = False
        self.save_every = 5
        self.logger.local_logger = PretrainingLogger()
        self._augment_generator: torch.Generator | None = None

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        kwargs = configuration_manager.network_arch_init_kwargs
        if "base_channels" not in kwargs or "num_levels" not in kwargs:
            raise Vox2VecError(f"plans '{plans_manager.plans_name}' of {plans_manager.dataset_name}: the configuration "
                               f"is not a vox2vec one (no FPN base_channels/num_levels). Prepare the data with "
                               f"vox2vec_nnunet_prepare_pretraining and train configuration 3d_vox2vec_pretrain.")
        return Vox2Vec(num_input_channels, kwargs["base_channels"], kwargs["num_levels"], cls.projection_dim)

    def _do_i_compile(self) -> bool:
        return False  # voxel read-out by fancy indexing; eager mode is what is tested

    def _build_loss(self):
        return None  # the loss is info_nce, called in train_step

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        pass  # no segmentation head

    def _set_batch_size_and_oversample(self) -> None:
        ranks = torch.distributed.get_world_size() if self.is_ddp else 1
        if self.num_volumes % ranks:
            raise Vox2VecError(f"num_volumes={self.num_volumes} volumes per iteration cannot be split evenly over "
                               f"{ranks} GPUs; use a number of GPUs that divides it or a variant with another "
                               f"num_volumes")
        self.batch_size = self.num_volumes // ranks  # volumes per rank; the loss sees all of them

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=0.0)  # constant

    def get_dataloaders(self):
        keys, _ = self.do_split()
        dataset = self.dataset_class(self.preprocessed_dataset_folder, keys)
        patch_size = self.configuration_manager.patch_size
        workers = get_allowed_n_proc_DA()
        loader = Vox2VecPairDataLoader(dataset, self.batch_size, self.num_positions, patch_size,
                                       num_threads_in_multithreaded=max(1, workers))
        transform = None if self.device.type == "cuda" else AugmentInWorkers(self.augmentation)
        if workers == 0:
            train = SingleThreadedAugmenter(loader, transform)
        else:
            train = NonDetMultiThreadedAugmenter(loader, transform, num_processes=workers,
                                                 num_cached=max(4, workers), seeds=None,
                                                 pin_memory=self.device.type == "cuda", wait_time=0.002)
        self.print_to_log_file(
            f"vox2vec pre-training: {len(keys)} volumes, n={self.num_volumes} volumes x m={self.num_positions} "
            f"positions per iteration, patch {list(patch_size)}, tau={self.temperature}, augmentation on "
            f"{'the GPU' if transform is None else 'the CPU workers'} ({workers} workers), "
            f"{self.num_epochs * self.num_iterations_per_epoch:,} iterations")
        return train, None

    def _augment_on_device(self, patches: torch.Tensor) -> torch.Tensor:
        if self._augment_generator is None:
            self._augment_generator = torch.Generator(device=self.device).manual_seed(
                int(np.random.randint(2 ** 62)) + self.local_rank)
        return self.augmentation(patches, self._augment_generator)

    def train_step(self, batch: dict) -> dict:
        patches = torch.cat([batch["patches1"], batch["patches2"]]).to(self.device, non_blocking=True)
        if not batch.get("augmented", False):
            with torch.no_grad():
                patches = self._augment_on_device(patches)
        second = batch["positions2"].clone()
        second[:, 0] += batch["patches1"].shape[0]  # view 2 follows view 1 in the batch
        positions = torch.cat([batch["positions1"], second]).to(self.device, non_blocking=True)

        self.optimizer.zero_grad(set_to_none=True)
        z1, z2 = self.network(patches, positions).chunk(2)
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        loss = info_nce(z1, z2, self.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        with torch.no_grad():
            positive, negative = pair_cosine_similarities(z1.detach(), z2.detach())
        return {"loss": loss.item(), "positive_cosine": positive.item(), "negative_cosine": negative.item()}

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        for key, log_key in (("loss", "train_losses"), ("positive_cosine", "positive_cosine"),
                             ("negative_cosine", "negative_cosine")):
            self.logger.log(log_key, float(np.mean([o[key] for o in train_outputs])), self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        pass

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        pass

    def on_epoch_end(self) -> None:
        self.logger.log("epoch_end_timestamps", time(), self.current_epoch)
        value = lambda key: self.logger.get_value(key, step=-1)  # noqa: E731
        seconds = value("epoch_end_timestamps") - value("epoch_start_timestamps")
        self.print_to_log_file(
            f"loss {value('train_losses'):.4f}  cosine positive {value('positive_cosine'):.3f} negative "
            f"{value('negative_cosine'):.3f}  lr {value('lrs'):.2e}  epoch time {seconds:.1f} s "
            f"({self.num_iterations_per_epoch / seconds:.2f} it/s)")
        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != self.num_epochs - 1:
            self.save_checkpoint(f"{self.output_folder}/checkpoint_latest.pth")
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0 or self.disable_checkpointing:
            return
        checkpoint = {
            "network_weights": {k: v.detach().cpu() for k, v in unwrap(self.network).state_dict().items()},
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": None,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": None,
        }
        write_atomically(filename, lambda tmp: torch.save(checkpoint, tmp))

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("vox2vec pre-training has no segmentation validation. Use the checkpoint with "
                               "nnUNetv2_train ... -pretrained_weights "
                               f"{self.output_folder}/checkpoint_final.pth")
