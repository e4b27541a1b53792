"""Segmentation trainers: from scratch, linear/non-linear probing and fine-tuning (paper Sect. 3.4, 4.2).

Each is an nnU-Net trainer variant that changes one thing. All keep nnU-Net's data pipeline,
Dice + cross-entropy loss, region/ignore-label handling, validation and checkpoints, and
replace the optimisation by the paper's: Adam, learning rate 3e-4, no weight decay, 45,000
iterations (``num_epochs x num_iterations_per_epoch`` = 180 x 250, batch 7 from the plans),
no deep supervision. The class attribute ``budget`` (:mod:`.budgets`) sets iterations and
each setup's learning rate; every setup has the same short-budget variants
(:mod:`.variants`). The network comes from the plans (``vox2vec_nnunet_plan``); ``head``
overrides the plans' head choice.

Every run states whether its backbone came from a pre-training checkpoint or from random
initialisation, in the training log and in ``fold_X/vox2vec_run.json``; the probing and
fine-tuning trainers refuse to run without pre-trained weights, and the ``_RandomInit``
variants (the paper's "random-FPN" baseline) refuse them, so the two are never mistaken.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Iterable, Literal

import numpy as np
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from vox2vec_nnunet.channels import channel_names
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.input_channels import prepare_pretrained_weights
from vox2vec_nnunet.nnunet_env import resolve_device
from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.training.budgets import PAPER, Budget, BudgetedTrainer
from vox2vec_nnunet.training.common import (RUN_RECORD, ExitsOnVox2VecError, check_resumed_learning_rate,
                                            count_parameters, pretrained_weights_argument, state_checksum, unwrap,
                                            write_run_record)
from vox2vec_nnunet.weights import (PRETRAINED_WEIGHTS_FILE, backbone_weights, check_backbone_fits, load_weights_file,
                                    network_weights)
from vox2vec_nnunet_plans.architecture import NETWORK_CLASS_NAME

BackboneSource = Literal["pretrained", "random_init"]


class Vox2VecTrainer(ExitsOnVox2VecError, BudgetedTrainer, nnUNetTrainer):
    """From scratch: FPN + non-linear head trained end to end (paper Sect. 4.2, "from scratch").

    Given ``-pretrained_weights`` it trains a pre-trained backbone end to end from the first
    iteration (use ``Vox2VecTrainer_FineTune`` for the paper's fine-tuning schedule).
    """

    head: str | None = None
    """Head to build; ``None`` keeps the plans' choice (non-linear by default)."""
    required_backbone: BackboneSource | None = None
    """Refuse to train unless the backbone comes from there; ``None`` accepts both."""
    budget: ClassVar[Budget] = PAPER
    """Iterations, learning rates and validation cost (the paper's; variants change it)."""
    setup: ClassVar[str] = "scratch"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, resolve_device(device))
        self.weight_decay = 0.0
        self.enable_deep_supervision = False
        self.backbone_source: BackboneSource | None = None
        self._initial_backbone_checksum: torch.Tensor | None = None
        self._resumed = False

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        architecture = configuration_manager.network_arch_class_name
        if architecture != NETWORK_CLASS_NAME:
            raise Vox2VecError(
                f"{cls.__name__} needs a vox2vec configuration, but this configuration of plans "
                f"'{plans_manager.plans_name}' builds {architecture}. Create the plans with "
                f"`vox2vec_nnunet_plan -d {plans_manager.dataset_name}` and train with "
                f"`nnUNetv2_train DATASET 3d_vox2vec FOLD -p Vox2VecPlans -tr {cls.__name__}`.")
        arch_kwargs = dict(configuration_manager.network_arch_init_kwargs)
        if cls.head is not None:
            arch_kwargs["head"] = cls.head
        return get_network_from_plans(architecture, arch_kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)

    @property
    def backbone(self) -> nn.Module:
        return unwrap(self.network).backbone

    @property
    def total_iterations(self) -> int:
        return self.num_epochs * self.num_iterations_per_epoch

    def initialize(self) -> None:
        super().initialize()
        self._initial_backbone_checksum = state_checksum(self.backbone)
        weights_file = pretrained_weights_argument()
        if weights_file is not None:
            self._check_pretrained_weights(weights_file)

    def _check_pretrained_weights(self, weights_file: str) -> None:
        """Validate ``-pretrained_weights`` safely before nnU-Net loads it (clear errors, no pickle)."""
        if self.required_backbone == "random_init":
            raise Vox2VecError(f"{type(self).__name__} is a random-initialisation baseline and takes no "
                               f"-pretrained_weights; drop the option or use the probe trainer without "
                               f"'_RandomInit' in its name.")
        checkpoint = load_weights_file(weights_file, PRETRAINED_WEIGHTS_FILE)
        state, line = prepare_pretrained_weights(unwrap(self.network), checkpoint,
                                                 network_weights(checkpoint, weights_file, PRETRAINED_WEIGHTS_FILE),
                                                 weights_file,
                                                 channel_names(self.dataset_json, "dataset.json"))
        check_backbone_fits(self.backbone.state_dict(), backbone_weights(state), weights_file)
        self.print_to_log_file(line)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=self.initial_lr, weight_decay=self.weight_decay)
        # Exponent 0: a constant learning rate (paper Sect. 4.2), stepped the nnU-Net way.
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=0.0)

    def parameter_groups(self) -> list[dict]:
        """What the optimiser trains; the probing and fine-tuning variants narrow or split it."""
        return [{"params": list(self.network.parameters())}]

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._resumed = True

    def save_checkpoint(self, filename: str) -> None:
        write_atomically(filename, super().save_checkpoint)

    def on_train_start(self) -> None:
        # Decided and checked before nnU-Net starts its data-augmentation workers: nnU-Net loads
        # -pretrained_weights (or the --c checkpoint) in run_training.maybe_load_checkpoint,
        # before run_training() calls on_train_start, so the backbone is final here and a
        # refusal exits cleanly instead of racing the workers' shutdown.
        if not self.was_initialized:  # nnU-Net initialises here when no weights were loaded
            self.initialize()
        record_file = Path(self.output_folder) / RUN_RECORD
        previous = json.loads(record_file.read_text()) if self._resumed and record_file.is_file() else None
        if previous is not None:  # --c: the backbone's origin was decided when the run started
            check_resumed_learning_rate(self, previous, record_file)
            self.backbone_source, weights = previous["backbone_source"], previous["pretrained_weights"]
        else:
            changed = not torch.equal(state_checksum(self.backbone), self._initial_backbone_checksum)
            self.backbone_source, weights = ("pretrained" if changed else "random_init"), pretrained_weights_argument()
        if self.required_backbone is not None and self.backbone_source != self.required_backbone:
            raise Vox2VecError(
                f"{type(self).__name__} trains on a pre-trained backbone, but no -pretrained_weights were given "
                f"(the backbone is randomly initialised). Pass -pretrained_weights CHECKPOINT (from "
                f"Vox2VecPretrainTrainer or vox2vec_nnunet_import_weights), or use "
                f"{type(self).__name__}_RandomInit for the random-FPN baseline.")
        super().on_train_start()
        described = {"pretrained": f"PRE-TRAINED weights ({weights or 'loaded before training'})",
                     "random_init": "RANDOM INITIALISATION (no pre-trained weights)"}[self.backbone_source]
        self.print_to_log_file(
            f"vox2vec: backbone from {described}; {self.trainable_parameter_count():,} of "
            f"{count_parameters(self.network):,} parameters trainable; {self.total_iterations:,} iterations of "
            f"batch {self.batch_size}, Adam lr {self.initial_lr:g} ({self.learning_rate_source})")
        if self.local_rank == 0:
            write_run_record(self, record_file, self.backbone_source, weights, self.trainable_parameter_count())

    def trainable_parameter_count(self) -> int:
        """Parameters the optimiser updates over the run (the x axis of the paper's Fig. 2)."""
        return sum(p.numel() for group in self.optimizer.param_groups for p in group["params"])


class _FrozenBackboneTrainer(Vox2VecTrainer):
    """Probing: the backbone is frozen (eval mode, no gradients, not in the optimiser); only
    the head trains (paper Sect. 3.4). The checkpoint still holds the whole network."""

    def parameter_groups(self) -> list[dict]:
        self.backbone.requires_grad_(False)
        return [{"params": list(unwrap(self.network).decoder.parameters())}]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.backbone.eval()


class Vox2VecTrainer_LinearProbe(_FrozenBackboneTrainer):
    """Linear probing: frozen pre-trained FPN + linear FPN head (paper Sect. 3.4)."""

    setup = "linear_probe"

    head = "linear"
    required_backbone = "pretrained"


class Vox2VecTrainer_NonLinearProbe(_FrozenBackboneTrainer):
    """Non-linear probing: frozen pre-trained FPN + non-linear head (paper Sect. 3.4)."""

    setup = "nonlinear_probe"

    head = "nonlinear"
    required_backbone = "pretrained"


class Vox2VecTrainer_LinearProbe_RandomInit(Vox2VecTrainer_LinearProbe):
    """Linear probing of a frozen, randomly initialised FPN: the paper's random-FPN baseline."""

    setup = "linear_probe_random"

    required_backbone = "random_init"


class Vox2VecTrainer_NonLinearProbe_RandomInit(Vox2VecTrainer_NonLinearProbe):
    """Non-linear probing of a frozen, randomly initialised FPN (random-FPN baseline)."""

    setup = "nonlinear_probe_random"

    required_backbone = "random_init"


def reestimate_batchnorm(backbone: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Replace the running statistics of every BatchNorm layer by their average over ``batches``.

    A randomly initialised FPN in eval mode normalises with mean 0 and variance 1, which leaves
    its features at a small, arbitrary scale; an optimiser then moves a probe's logits slowly.
    Re-estimating the statistics on the data (cumulative average, ``momentum=None``) puts the
    random features on the scale a trained network has. The weights stay random.
    """
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    backbone.train()
    with torch.no_grad():
        for x in batches:
            backbone(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    backbone.eval()


class _BatchNormReestimated:
    """Random-FPN baseline with BatchNorm statistics re-estimated on training batches first.

    Re-estimation helps a probe at a short budget and can hurt a converged one
    (docs/method.md, "What a small CPU run can show"); tables name which random baseline they show.
    """

    batchnorm_batches: int = 20

    def on_train_start(self) -> None:
        super().on_train_start()
        if self._resumed:  # the statistics are in the checkpoint
            return
        device = self.device
        reestimate_batchnorm(self.backbone, (next(self.dataloader_train)["data"].to(device)
                                             for _ in range(self.batchnorm_batches)))
        self.print_to_log_file(f"vox2vec: BatchNorm statistics of the random backbone re-estimated on "
                               f"{self.batchnorm_batches} training batches")


class Vox2VecTrainer_LinearProbe_RandomInitBN(_BatchNormReestimated, Vox2VecTrainer_LinearProbe_RandomInit):
    """Linear probing of a frozen random FPN whose BatchNorm statistics were re-estimated on the data."""

    setup = "linear_probe_random_bn"


class Vox2VecTrainer_NonLinearProbe_RandomInitBN(_BatchNormReestimated, Vox2VecTrainer_NonLinearProbe_RandomInit):
    """Non-linear probing of a frozen random FPN whose BatchNorm statistics were re-estimated on the data."""

    setup = "nonlinear_probe_random_bn"


def finetune_schedule(total_iterations: int) -> tuple[int, int]:
    """Iterations the backbone stays frozen, then warms up, in fine-tuning of ``total_iterations``.

    The paper's proportions (Sect. 4.2: frozen for 15,000 and warmed up over 1,200 of 45,000
    iterations): a third, and 1,200/45,000 rounded (at least 1), so 45,000 gives exactly
    (15,000, 1,200) and the 500-iteration demo budget (166, 13).
    """
    freeze = total_iterations // 3
    warmup = max(1, (total_iterations * 1200 + 22_500) // 45_000)
    return freeze, warmup


def finetune_backbone_lr(iteration: int, freeze_iterations: int, warmup_iterations: int = 1200,
                         start_lr: float = 3e-5, end_lr: float = 3e-4) -> float:
    """The backbone's learning rate in fine-tuning (paper Sect. 4.2).

    0 while frozen (the first ``freeze_iterations``), then rising exponentially from
    ``start_lr`` to ``end_lr`` over ``warmup_iterations``, then ``end_lr``.
    """
    if iteration < freeze_iterations:
        return 0.0
    progress = (iteration - freeze_iterations) / warmup_iterations
    return end_lr if progress >= 1 else start_lr * (end_lr / start_lr) ** progress


class Vox2VecTrainer_FineTune(Vox2VecTrainer):
    """Fine-tuning: pre-trained FPN + non-linear head (paper Sect. 4.2).

    The backbone, in its own parameter group, is frozen for the first third of the iterations,
    then its learning rate rises exponentially from the paper's 3e-5 to its 3e-4 over
    1,200/45,000 of the iterations (:func:`finetune_schedule`, :func:`finetune_backbone_lr`);
    the head trains at ``initial_lr`` throughout. At the paper's budget that is its schedule:
    frozen for 15,000 of 45,000 iterations, 3e-5 -> 3e-4 over 1,200. This follows the paper;
    the released code does not apply this schedule correctly (docs/method.md, "Evaluation
    protocol"). Scaling the
    warm-up matters at short budgets: a fixed 1,200-iteration warm-up leaves a 500-iteration
    run's backbone below 7 % of its learning rate.

    The backbone's range stays the paper's when a budget raises the head's learning rate (the
    demo budgets' 3e-3): the pre-trained backbone never sees more than 3e-4, as in the paper;
    warmed up to the head's 3e-3 it collapsed at the unfreeze (docs/results.md, "Fine-tuning's
    schedule at short budgets").

    ``backbone_batchnorm`` says what the backbone's BatchNorm layers do once it is unfrozen
    (while frozen they keep the pre-training statistics, as in probing): ``"batch"`` normalises
    with batch statistics and updates the running ones (ordinary training, the default);
    ``"pretrained"`` keeps the pre-training statistics (eval mode) and trains only their affine
    parameters. Measured at the demo budget, the two differ by less than the spread over folds
    and reruns, so the default stays ordinary training (docs/results.md, "Fine-tuning's schedule
    at short budgets").
    Re-estimating the statistics at the unfreeze was not measured.
    """

    setup = "finetune"
    head = "nonlinear"
    required_backbone = "pretrained"
    backbone_batchnorm: ClassVar[Literal["batch", "pretrained"]] = "batch"
    backbone_start_lr: ClassVar[float] = 3e-5
    backbone_end_lr: ClassVar[float] = 3e-4

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._iteration_in_epoch = 0

    @property
    def freeze_iterations(self) -> int:
        return finetune_schedule(self.total_iterations)[0]

    @property
    def backbone_warmup_iterations(self) -> int:
        return finetune_schedule(self.total_iterations)[1]

    def parameter_groups(self) -> list[dict]:
        network = unwrap(self.network)
        return [{"params": list(network.decoder.parameters())},
                {"params": list(network.backbone.parameters()), "lr": 0.0}]

    def backbone_lr(self, iteration: int) -> float:
        return finetune_backbone_lr(iteration, self.freeze_iterations, self.backbone_warmup_iterations,
                                    self.backbone_start_lr, self.backbone_end_lr)

    def on_train_start(self) -> None:
        super().on_train_start()
        self.print_to_log_file(
            f"vox2vec fine-tuning: backbone frozen for {self.freeze_iterations:,} of {self.total_iterations:,} "
            f"iterations, then lr {self.backbone_start_lr:g} -> {self.backbone_end_lr:g} over "
            f"{self.backbone_warmup_iterations:,}; backbone BatchNorm after the unfreeze: {self.backbone_batchnorm}")

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._iteration_in_epoch = 0
        iteration = self.current_epoch * self.num_iterations_per_epoch
        self.print_to_log_file(f"Backbone learning rate: {np.round(self.backbone_lr(iteration), decimals=7)}")

    def set_backbone_for(self, iteration: int) -> None:
        """The backbone's learning rate, gradients and BatchNorm mode at ``iteration``."""
        lr = self.backbone_lr(iteration)
        self.optimizer.param_groups[1]["lr"] = lr
        frozen = lr == 0.0
        self.backbone.requires_grad_(not frozen)
        self.backbone.train(not frozen and self.backbone_batchnorm == "batch")

    def train_step(self, batch: dict) -> dict:
        self.set_backbone_for(self.current_epoch * self.num_iterations_per_epoch + self._iteration_in_epoch)
        self._iteration_in_epoch += 1
        return super().train_step(batch)
