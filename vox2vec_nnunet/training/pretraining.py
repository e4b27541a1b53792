"""``Vox2VecPretrainTrainer``: contrastive voxel-level pre-training run by ``nnUNetv2_train``.

    nnUNetv2_train 900 3d_vox2vec_pretrain all -p Vox2VecPlans -tr Vox2VecPretrainTrainer

Paper Sect. 3.1-3.3 and 4.1 (docs/method.md, "Positive and negative pairs" to "Pre-training
optimisation"): per iteration, ``num_volumes`` (n = 10)
different volumes each give two overlapping patches and ``num_positions`` (m = 1000) positive
voxel pairs; the patches are intensity-augmented, both views go through the FPN in one batch,
each sampled voxel's 1008-d representation is projected to the 128-d unit sphere, and InfoNCE
(tau = 0.1) contrasts every pair against all other 2N - 2 voxels of the batch. Adam, lr 3e-4,
no weight decay, gradient-norm clip 1.0, 100,000 iterations (the budget
:data:`~vox2vec_nnunet.training.budgets.PRETRAINING_PAPER`, 400 x 250; a variant changes ``budget``).

Channels: a CT channel (stored in HU) gets the paper's augmentation (``augmentation``), any other
channel (stored z-scored) ``normalized_augmentation``, each with its own seeds
(:class:`~vox2vec_nnunet.pretraining.augmentation.ChannelAugmentation`); the checkpoints record the
dataset's channel names (``checkpoint["vox2vec"]["channel_names"]``), so a fine-tuning run can say
what its weights were pre-trained on.

Data flow: background workers (batchgenerators' ordered ``MultiThreadedAugmenter``) load
cases and sample pairs (:class:`vox2vec_nnunet.pretraining.dataloader.Vox2VecPairDataLoader`);
the augmentation runs where it is cheapest, on the GPU in the training step when there is one,
otherwise in the CPU workers (``augment_on_device``), so the model does not wait for data. On
CUDA the backbone runs in bfloat16 autocast with projector and loss in float32
(``backbone_autocast``); both settings can be forced on the CPU, where the tests run them.
With CUDA the augmenter pins the batches' memory and the step copies them with
``non_blocking=True``; torch 2.14 cannot pin memory without an accelerator
(``Tensor.pin_memory()`` raises), so on the CPU the same step runs with unpinned batches, whose
``non_blocking`` copies to the CPU are no-ops.

Repeatable runs: every batch, and every patch's augmentation, is a pure function of the run's
``seed`` and the global iteration (see the data loader), whatever the number of processes and
data workers; the network is initialised after ``torch.manual_seed(seed)``. The seed is printed
in the training log and stored in every checkpoint (``checkpoint["vox2vec"]["seed"]``), so
``--c`` continues the same stream: a resumed run ends with the weights of an uninterrupted one.

Snapshots: with ``snapshot_every = K`` every K-th epoch also writes a weights-only checkpoint
``fold_X/snapshots/checkpoint_iter_{iteration:07d}.pth`` (e.g. ``checkpoint_iter_0005000.pth``
after 5,000 iterations) holding ``network_weights`` and ``vox2vec`` (``seed``, ``iteration``,
``epoch``); ``nnUNetv2_train -pretrained_weights`` takes it like ``checkpoint_final.pth``.

Several processes: ``nnUNetv2_train -num_gpus G`` on one machine, or PyTorch's launcher on
any number of machines, which runs nnU-Net's own training command in every process::

    torchrun --nnodes N --nproc_per_node G --rdzv_backend c10d --rdzv_endpoint HOST:PORT \
        -m nnunetv2.run.run_training 900 3d_vox2vec_pretrain all -p Vox2VecPlans -tr Vox2VecPretrainTrainer

(the trainer joins torchrun's process group: nccl on CUDA, gloo with ``-device cpu``). The
n volumes of an iteration are split over all ranks (the world size must divide n), the
embeddings of all ranks are gathered with gradients, so every negative of every rank counts
(:func:`vox2vec_nnunet.distributed.gather_with_grad`), and BatchNorm normalises with the
statistics of the whole batch (:class:`vox2vec_nnunet.network.global_batchnorm.GlobalBatchNorm`,
on the CPU too, where PyTorch's SyncBatchNorm does not run): the W processes train the
single-process model of the paper (Sect. 4.1: one GPU), with the same batches. Rank 0 writes
checkpoints, snapshots and the log; ``--c`` resumes every rank from ``checkpoint_latest.pth``
(each machine must see ``nnUNet_results``, e.g. on a shared file system; the ranks check that
they resume from the same iteration).

There is no segmentation validation. Each epoch logs the loss, the mean cosine similarity of
positive and of negative pairs and the learning rate to the training log and ``progress.png``.
Checkpoints are nnU-Net's format (``--c`` resumes), written atomically, with the weights on the
CPU so that ``-pretrained_weights`` loads them on any machine.
"""
from __future__ import annotations

import secrets
import warnings
from pathlib import Path
from time import time
from typing import ClassVar

import matplotlib
import numpy as np
import torch
import torch.distributed as dist
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.logging.nnunet_logger import LocalLogger
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.distributed import (ddp_device_ids, distributed_active, gather_with_grad,
                                        init_process_group_from_torchrun, launched_by_torchrun, process_device)
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.loss import info_nce, pair_cosine_similarities
from vox2vec_nnunet.network.global_batchnorm import convert_to_global_batchnorm
from vox2vec_nnunet.network.vox2vec import Vox2Vec
from vox2vec_nnunet.nnunet_env import resolve_device
from vox2vec_nnunet.pretraining.augmentation import (ChannelAugmentation, IntensityAugmentation,
                                                     NormalizedIntensityAugmentation)
from vox2vec_nnunet.pretraining.dataloader import MAX_SEED, Vox2VecPairDataLoader, pad_values
from vox2vec_nnunet.training.budgets import PRETRAINING, PRETRAINING_PAPER, Budget, BudgetedTrainer
from vox2vec_nnunet.training.common import ExitsOnVox2VecError, unwrap

matplotlib.use("agg")

SNAPSHOT_FOLDER = "snapshots"
"""Subfolder of ``fold_X`` that holds the weights-only snapshots."""


def snapshot_name(iteration: int) -> str:
    """File name of the snapshot after ``iteration`` iterations: ``checkpoint_iter_0005000.pth``."""
    return f"checkpoint_iter_{iteration:07d}.pth"


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
    """batchgenerators transform: the intensity augmentation, run in the CPU data workers.

    Each view is augmented with the per-patch seeds the batch carries; it adds
    ``augmented = True`` to the batch. (In a worker process the loader has set torch to one
    thread.)
    """

    def __init__(self, augmentation: ChannelAugmentation) -> None:
        self.augmentation = augmentation

    def __call__(self, **batch) -> dict:
        for view, key in enumerate(("patches1", "patches2")):
            batch[key] = self.augmentation(batch[key], batch["augmentation_seeds"][:, view])
        batch["augmented"] = True
        return batch


class Vox2VecPretrainTrainer(ExitsOnVox2VecError, BudgetedTrainer, nnUNetTrainer):
    """vox2vec pre-training (paper Sect. 3, 4.1); see the module docstring."""

    budget: ClassVar[Budget] = PRETRAINING_PAPER
    setup: ClassVar[str] = PRETRAINING

    num_volumes: int = 10
    """n: different volumes per iteration (paper Sect. 3.1); under DDP split over the ranks."""
    num_positions: int = 1000
    """m: positive pairs per volume (paper Sect. 3.1)."""
    temperature: float = 0.1
    projection_dim: int = 128
    grad_clip_norm: float = 1.0
    augmentation: IntensityAugmentation = IntensityAugmentation()
    """The augmentation of CT channels (stored in HU; paper Sect. 3.1)."""
    normalized_augmentation: NormalizedIntensityAugmentation = NormalizedIntensityAugmentation()
    """The augmentation of the other channels (stored z-scored)."""
    seed: int | None = None
    """Seed of the run's batches, augmentation and initialisation (0 <= seed < 2**63). None:
    drawn from OS entropy at the start of a fresh run. Printed in the training log and stored
    in the checkpoint; ``--c`` keeps the checkpoint's seed."""
    snapshot_every: int | None = None
    """Every this many epochs, a weights-only snapshot in ``fold_X/snapshots`` (None: none)."""
    augment_on_device: bool | None = None
    """Augment in the training step on the training device (True) or in the CPU data workers
    (False). None: on the device when it is CUDA."""
    backbone_autocast: bool | None = None
    """Run the backbone in bfloat16 autocast (projector and loss stay float32). None: on CUDA."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        requested = resolve_device(device)
        # Under torchrun the trainer joins the process group before nnU-Net's constructor, so
        # that nnU-Net's rank-0-only logging and writing hold from the start.
        self._owns_process_group = launched_by_torchrun() and not distributed_active()
        process = init_process_group_from_torchrun(requested) if self._owns_process_group else None
        with warnings.catch_warnings():  # nnU-Net makes a CUDA GradScaler for any process group
            warnings.filterwarnings("ignore", message=".*GradScaler is enabled, but CUDA is not available")
            super().__init__(plans, configuration, fold, dataset_json, requested)
        if self.is_ddp:  # nnU-Net took GPU number "rank": right on one machine only (-num_gpus)
            self.device = process or process_device(requested, dist.get_rank())
            if self.device.type != "cuda":
                self.grad_scaler = None
            print(f"vox2vec: rank {self.local_rank} of {dist.get_world_size()}"
                  f"{' (torchrun)' if self._owns_process_group else ''}, device {self.device}")
        self.weight_decay = 0.0
        self.enable_deep_supervision = False
        self.save_every = 5
        self.logger.local_logger = PretrainingLogger()
        self.run_seed: int | None = None  # the seed in use: the attribute, drawn, or from the checkpoint
        self._seed_source = ""
        self._next_iteration = 0  # the global iteration train_step expects next
        self._resumed_from: dict | None = None  # the run record of the checkpoint --c loaded

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

    def channel_augmentation(self) -> ChannelAugmentation:
        """Each input channel's augmentation, by the normalisation its data is stored with."""
        schemes = self.configuration_manager.normalization_schemes
        return ChannelAugmentation.for_stored_schemes(schemes, [self.augmentation] * len(schemes),
                                                      self.normalized_augmentation)

    def _uses_device_augmentation(self) -> bool:
        return self.device.type == "cuda" if self.augment_on_device is None else bool(self.augment_on_device)

    def _uses_backbone_autocast(self) -> bool:
        return self.device.type == "cuda" if self.backbone_autocast is None else bool(self.backbone_autocast)

    def _resolve_seed(self) -> None:
        """The run's seed: from the checkpoint (``--c``), the ``seed`` attribute, or OS entropy."""
        if self.run_seed is None:
            if self.seed is not None:
                self.run_seed, self._seed_source = self.seed, "the trainer's seed attribute"
            else:
                drawn = [secrets.randbits(63)]
                if self.is_ddp:  # every rank must use rank 0's seed
                    dist.broadcast_object_list(drawn, src=0)
                self.run_seed = drawn[0]
                self._seed_source = f"drawn from OS entropy; a variant with seed = {self.run_seed} repeats this run"
        if isinstance(self.run_seed, bool) or not isinstance(self.run_seed, int) or \
                not 0 <= self.run_seed <= MAX_SEED:
            raise Vox2VecError(f"{type(self).__name__}.seed must be None or an integer in [0, 2**63), "
                               f"got {self.run_seed!r}")

    def initialize(self) -> None:
        if self.snapshot_every is not None and (isinstance(self.snapshot_every, bool) or
                                                not isinstance(self.snapshot_every, int) or self.snapshot_every < 1):
            raise Vox2VecError(f"{type(self).__name__}.snapshot_every must be None or a positive number of epochs, "
                               f"got {self.snapshot_every!r}")
        if self.is_ddp:
            self._check_ranks_agree()
        self._resolve_seed()
        try:  # refused here, before any data is loaded
            self.channel_augmentation()
        except ValueError as error:
            raise Vox2VecError(f"plans '{self.plans_manager.plans_name}' of {self.plans_manager.dataset_name}: "
                               f"{error}") from None
        torch.manual_seed(self.run_seed)  # a repeatable initialisation of the network
        # nnU-Net's initialize would wrap the network in SyncBatchNorm (CUDA only) and in DDP on
        # GPU "local_rank" (its global rank); it sees a single process and the wrapping is done here.
        distributed, self.is_ddp = self.is_ddp, False
        try:
            super().initialize()
        finally:
            self.is_ddp = distributed
        unwrap(self.network).backbone_autocast = self._uses_backbone_autocast()
        if distributed:  # the optimiser holds the same parameters: the conversion keeps them
            self.network = DistributedDataParallel(convert_to_global_batchnorm(self.network),
                                                   device_ids=ddp_device_ids(self.device))
        self.print_to_log_file(f"vox2vec pre-training seed: {self.run_seed} ({self._seed_source})")

    def _check_ranks_agree(self) -> None:
        """Every rank starts fresh, or every rank resumes from the same checkpoint record;
        otherwise a clear error on every rank (before a collective could wait forever)."""
        records = [None] * dist.get_world_size()
        dist.all_gather_object(records, self._resumed_from)
        if any(record != records[0] for record in records):
            described = ", ".join(f"rank {rank}: {'a fresh start' if record is None else record}"
                                  for rank, record in enumerate(records))
            raise Vox2VecError(f"the ranks of this run do not start from the same point ({described}). With --c "
                               f"every machine must see the same {self.output_folder}/checkpoint_latest.pth "
                               f"(put nnUNet_results on a file system all machines share)")

    def _do_i_compile(self) -> bool:
        return False  # voxel read-out by fancy indexing; eager mode is what is tested

    def _build_loss(self):
        return None  # the loss is info_nce, called in train_step

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        pass  # no segmentation head

    def _set_batch_size_and_oversample(self) -> None:
        ranks = dist.get_world_size() if distributed_active() else 1
        if self.num_volumes % ranks:  # raised on every rank alike
            raise Vox2VecError(f"num_volumes={self.num_volumes} volumes per iteration cannot be split evenly over "
                               f"a world size of {ranks} processes; use a number of processes (nodes x GPUs per "
                               f"node) that divides {self.num_volumes}, or a variant with another num_volumes")
        self.batch_size = self.num_volumes // ranks  # volumes per rank; the loss sees all of them

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=0.0)  # constant

    def get_dataloaders(self):
        """The training batches in iteration order (batchgenerators' ordered augmenter), from the
        iteration the run is at; no validation loader."""
        keys, _ = self.do_split()
        dataset = self.dataset_class(self.preprocessed_dataset_folder, keys)
        patch_size = self.configuration_manager.patch_size
        workers = get_allowed_n_proc_DA()
        schemes = self.configuration_manager.normalization_schemes
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if self.is_ddp else (0, 1)
        start = self.current_epoch * self.num_iterations_per_epoch
        try:
            loader = Vox2VecPairDataLoader(dataset, self.num_volumes, self.num_positions, patch_size,
                                           seed=self.run_seed, channel_pad_values=pad_values(schemes), rank=rank,
                                           world_size=world_size, start_iteration=start,
                                           num_threads_in_multithreaded=max(1, workers))
        except ValueError as error:  # names the case or the setting
            raise Vox2VecError(str(error)) from None
        self._next_iteration = start
        on_device = self._uses_device_augmentation()
        transform = None if on_device else AugmentInWorkers(self.channel_augmentation())
        if workers == 0:
            train = SingleThreadedAugmenter(loader, transform)
        else:  # ordered: worker t makes iterations start + t + k * workers, read in turn
            train = MultiThreadedAugmenter(loader, transform, num_processes=workers, num_cached_per_queue=2,
                                           seeds=None, pin_memory=self.device.type == "cuda", wait_time=0.002)
        self.print_to_log_file(
            f"vox2vec pre-training: {len(keys)} volumes, n={self.num_volumes} volumes x m={self.num_positions} "
            f"positions per iteration ({len(loader.local_slots)} volumes on this process of {world_size}), patch "
            f"{list(patch_size)}, tau={self.temperature}, augmentation on "
            f"{f'the training device ({self.device.type})' if on_device else 'the CPU workers'} ({workers} "
            f"workers), backbone autocast {'bfloat16' if self._uses_backbone_autocast() else 'off (float32)'}, "
            f"{self.num_epochs * self.num_iterations_per_epoch:,} iterations, starting at iteration {start:,}")
        return train, None

    def train_step(self, batch: dict) -> dict:
        if batch["iteration"] != self._next_iteration:
            raise RuntimeError(f"the data loader delivered iteration {batch['iteration']} where iteration "
                               f"{self._next_iteration} was due: the batches must come in order")
        self._next_iteration += 1
        patches = torch.cat([batch["patches1"], batch["patches2"]]).to(self.device, non_blocking=True)
        if not batch.get("augmented", False):
            seeds = torch.cat([batch["augmentation_seeds"][:, 0], batch["augmentation_seeds"][:, 1]])
            with torch.no_grad():
                patches = self.channel_augmentation()(patches, seeds)  # generators on the training device
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
        # the snapshot first: a run stopped between the two resumes from the checkpoint before
        # and writes the snapshot again, so no snapshot goes missing
        if self.snapshot_every and (self.current_epoch + 1) % self.snapshot_every == 0:
            self.save_snapshot()
        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != self.num_epochs - 1:
            self.save_checkpoint(f"{self.output_folder}/checkpoint_latest.pth")
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    def _cpu_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in unwrap(self.network).state_dict().items()}

    def _run_record(self) -> dict:
        """What a checkpoint records about the run beyond nnU-Net's keys (after this epoch)."""
        return {"seed": self.run_seed, "iteration": (self.current_epoch + 1) * self.num_iterations_per_epoch,
                "epoch": self.current_epoch + 1, "channel_names": dict(self.dataset_json["channel_names"])}

    def save_snapshot(self) -> None:
        """A weights-only checkpoint after this epoch, named by its iteration count (rank 0)."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return
        record = self._run_record()
        snapshot = {"network_weights": self._cpu_weights(), "vox2vec": record, "trainer_name": type(self).__name__}
        path = Path(self.output_folder) / SNAPSHOT_FOLDER / snapshot_name(record["iteration"])
        path.parent.mkdir(exist_ok=True)
        write_atomically(path, lambda tmp: torch.save(snapshot, tmp))
        self.print_to_log_file(f"snapshot after iteration {record['iteration']:,}: {path}")

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0 or self.disable_checkpointing:
            return
        checkpoint = {
            "network_weights": self._cpu_weights(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": None,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": None,
            "vox2vec": self._run_record(),
        }
        write_atomically(filename, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's resume, plus the run's seed from the checkpoint (before the network is built)."""
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):  # memory-mapped: reads the small record, not the tensors
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        record = checkpoint.get("vox2vec")
        if record is not None:
            self.run_seed, self._seed_source = int(record["seed"]), "from the checkpoint"
        else:
            print("vox2vec: the checkpoint records no seed (written by an older version); the resumed run uses a "
                  "new seed")
        self._resumed_from = {"epoch": int(checkpoint["current_epoch"]), "seed": self.run_seed}
        super().load_checkpoint(filename_or_checkpoint)

    def on_train_end(self) -> None:
        super().on_train_end()
        if self._owns_process_group:  # under -num_gpus nnU-Net ends the group it started
            dist.barrier()  # the final checkpoint is written before any rank leaves
            dist.destroy_process_group()

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("vox2vec pre-training has no segmentation validation. Use the checkpoint with "
                               "nnUNetv2_train ... -pretrained_weights "
                               f"{self.output_folder}/checkpoint_final.pth")
