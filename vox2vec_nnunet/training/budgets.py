"""Training budgets of the segmentation trainers: one definition of each.

A budget fixes how long and how fast every evaluation setup trains (iterations, learning rate)
and how much the per-epoch pseudo-validation and the final validation cost; the batch comes
from the plans, so every setup of one budget runs the same iterations of the same batch, as
the paper's comparison needs (Sect. 4.2). ``PAPER`` is the base trainers' budget; each of
``VARIANT_BUDGETS`` gives every setup's trainer a variant ``TRAINER_NAME`` (e.g.
``Vox2VecTrainer_FineTune_Demo``, made in :mod:`vox2vec_nnunet.training.budget_variants`).
Schedules inside a run (fine-tuning's freeze and warm-up) scale with ``total_iterations``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """``num_epochs x num_iterations_per_epoch`` iterations of Adam at ``initial_lr`` (no weight
    decay); ``num_val_iterations_per_epoch`` batches of nnU-Net's per-epoch pseudo-validation;
    ``test_time_mirroring`` for the final validation (off: 8x fewer forward passes)."""

    name: str
    num_epochs: int
    num_iterations_per_epoch: int
    initial_lr: float
    num_val_iterations_per_epoch: int
    test_time_mirroring: bool

    @property
    def total_iterations(self) -> int:
        return self.num_epochs * self.num_iterations_per_epoch

    def describe(self) -> str:
        mirroring = "with" if self.test_time_mirroring else "without"
        return (f"{self.total_iterations:,} iterations ({self.num_epochs} x {self.num_iterations_per_epoch}), "
                f"Adam lr {self.initial_lr:g}, validated {mirroring} test-time mirroring")


PAPER = Budget("", num_epochs=180, num_iterations_per_epoch=250, initial_lr=3e-4,
               num_val_iterations_per_epoch=50, test_time_mirroring=True)
"""Paper Sect. 4.2: 45,000 iterations at Adam 3e-4 (nnU-Net's 50 pseudo-validation batches)."""

DEMO = Budget("Demo", num_epochs=5, num_iterations_per_epoch=100, initial_lr=3e-3,
              num_val_iterations_per_epoch=5, test_time_mirroring=False)
"""A short, fixed CPU budget (SPEC section 4): 500 iterations at a 10x higher learning rate."""

DEMO_LONG = Budget("DemoLong", num_epochs=20, num_iterations_per_epoch=100, initial_lr=3e-3,
                   num_val_iterations_per_epoch=5, test_time_mirroring=False)
"""Four times the demo budget: 2,000 iterations."""

VARIANT_BUDGETS: dict[str, Budget] = {b.name: b for b in (DEMO, DEMO_LONG)}
