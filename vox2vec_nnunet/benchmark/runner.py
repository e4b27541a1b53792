"""Train the folds that are missing with the real ``nnUNetv2_train``, resuming unfinished ones.

Each (setup, fold) is one subprocess ``nnUNetv2_train DATASET CONFIG FOLD -tr TRAINER -p PLANS
[-pretrained_weights W] [-device D] [--c | --val]`` whose output is streamed line by line with a
``[setup fold k]`` prefix. What to do with a fold is read from its folder (:func:`decide_action`):

* ``checkpoint_final.pth`` and ``validation/summary.json``: done, skipped;
* ``checkpoint_final.pth`` only: training finished, validation did not -> ``--val``;
* ``checkpoint_latest.pth`` only: training was interrupted -> ``--c``;
* otherwise: a fresh training (nnU-Net overwrites anything left in the folder).

``-pretrained_weights`` goes only with a fresh training: nnU-Net refuses it together with
``--c`` (``maybe_load_checkpoint``), and the checkpoint holds the weights anyway. A failing fold
is reported and the others still run.

A job with a ``learning_rate`` trains at that rate: ``VOX2VEC_LEARNING_RATE`` in the environment of
its ``nnUNetv2_train``, which every segmentation trainer takes as its ``initial_lr`` and records in
``vox2vec_run.json``; a fold that was started or finished at another rate is not touched (a
failure that says so). A job without one trains at its budget's rate: the variable is removed
from the environment, even when the user's shell sets it.
"""
from __future__ import annotations

import enum
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from vox2vec_nnunet.benchmark.collect import RunRecord
from vox2vec_nnunet.benchmark.layout import (CHECKPOINT_FINAL, CHECKPOINT_LATEST, RUN_RECORD,
                                             SUMMARY, ResultsLayout)
from vox2vec_nnunet.training.budgets import LEARNING_RATE_VARIABLE
from vox2vec_nnunet.training.setups import Setup
from vox2vec_nnunet.nnunet_env import training_env


class Action(enum.Enum):
    SKIP = "skip (finished)"
    TRAIN = "train"
    CONTINUE = "continue training (--c)"
    VALIDATE = "validate only (--val)"


def decide_action(fold_dir: Path) -> Action:
    """What ``nnUNetv2_train`` has to do for the fold whose output folder is ``fold_dir``."""
    if (fold_dir / CHECKPOINT_FINAL).is_file():
        return Action.SKIP if (fold_dir / SUMMARY).is_file() else Action.VALIDATE
    if (fold_dir / CHECKPOINT_LATEST).is_file():
        return Action.CONTINUE
    return Action.TRAIN


@dataclass(frozen=True)
class Job:
    """One fold of one setup; ``description`` says what the fold is, for messages;
    ``learning_rate`` the rate to train at (None: the budget's)."""

    setup: Setup
    fold: int
    description: str
    learning_rate: float | None = None

    @property
    def prefix(self) -> str:
        lr = "" if self.learning_rate is None else f", lr {self.learning_rate:g}"
        return f"[{self.setup.name} {self.description}{lr}]"

    def environment(self) -> dict[str, str | None]:
        """``VOX2VEC_LEARNING_RATE`` for this job's ``nnUNetv2_train`` (None: removed)."""
        return {LEARNING_RATE_VARIABLE: None if self.learning_rate is None else repr(self.learning_rate)}


def check_weights(setups: Sequence[Setup], pretrained_weights: Path | None,
                  option: str = "--pretrained_weights") -> None:
    """Refuse early (``ValueError``) when a setup needs weights and none, or no file, is given;
    ``option`` is the command-line option that gives them."""
    needing = [s.name for s in setups if s.needs_weights]
    if needing and pretrained_weights is None:
        network = "nnU-Net's U-Net pre-trained by Vox2VecPretrainTrainer_UNet" if any(
            s.own_unet for s in setups) else "the pre-trained FPN"
        raise ValueError(f"these setups start from {network}: {', '.join(needing)}; pass {option} FILE "
                         f"(an nnU-Net style checkpoint), or leave them out with --setups")
    if needing and not pretrained_weights.is_file():
        raise ValueError(f"{option} {pretrained_weights}: no such file")


def find_nnunet_train() -> str:
    """The ``nnUNetv2_train`` executable of this Python environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "nnUNetv2_train"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nnUNetv2_train")
    if found is None:
        raise FileNotFoundError("nnUNetv2_train not found next to the Python interpreter or on "
                                "PATH; is nnunetv2 installed in this environment?")
    return found


def train_command(executable: str, dataset: str, layout: ResultsLayout, job: Job, action: Action,
                  pretrained_weights: Path | None, device: str | None) -> list[str]:
    """The ``nnUNetv2_train`` command line for ``job`` (``action`` must not be SKIP)."""
    if action is Action.SKIP:
        raise ValueError("a skipped fold has no command")
    command = [executable, dataset, layout.configuration, str(job.fold), "-tr", job.setup.trainer,
               "-p", layout.plans]
    if action is Action.TRAIN and job.setup.needs_weights:
        if pretrained_weights is None:
            raise ValueError(f"setup {job.setup.name!r} needs pretrained weights")
        command += ["-pretrained_weights", str(pretrained_weights.resolve())]
    if device is not None:
        command += ["-device", device]
    if action is Action.CONTINUE:
        command.append("--c")
    elif action is Action.VALIDATE:
        command.append("--val")
    return command


@dataclass(frozen=True)
class Outcome:
    job: Job
    action: Action
    error: str | None = None  # None: done


def _weights_warning(fold_dir: Path, job: Job, pretrained_weights: Path | None) -> str | None:
    """A warning when a fold that is kept was trained from other weights than the ones given."""
    record_path = fold_dir / RUN_RECORD
    if not job.setup.needs_weights or pretrained_weights is None or not record_path.is_file():
        return None
    try:
        recorded = RunRecord.read(record_path).pretrained_weights
    except ValueError:
        return None  # reported when the results are collected
    if recorded is not None and os.path.realpath(recorded) != os.path.realpath(pretrained_weights):
        return (f"WARNING: this fold was started from weights {recorded!r}, not "
                f"{str(pretrained_weights)!r}; delete {fold_dir} to retrain it")
    return None


def _learning_rate_conflict(fold_dir: Path, job: Job) -> str | None:
    """Why a kept fold cannot be this job's: its run record names another learning rate."""
    record_path = fold_dir / RUN_RECORD
    if job.learning_rate is None or not record_path.is_file():
        return None
    try:
        recorded = RunRecord.read(record_path).initial_lr
    except ValueError:
        return None  # reported when the results are collected
    if recorded is None or math.isclose(recorded, job.learning_rate, rel_tol=1e-9):
        return None
    return (f"{fold_dir} was trained at learning rate {recorded:g}, not {job.learning_rate:g}; delete it "
            f"to train it at {job.learning_rate:g}")


def _stream(command: list[str], prefix: str, out: TextIO, env: Mapping[str, str | None]) -> int:
    merged = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    env = training_env({k: v for k, v in merged.items() if v is not None})
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            out.write(f"{prefix} {line.rstrip()}\n")
            out.flush()
    return process.returncode


def run_jobs(jobs: Sequence[Job], dataset: str, layout: ResultsLayout,
             pretrained_weights: Path | None, device: str | None, executable: str,
             out: TextIO = sys.stdout, env: Mapping[str, str] | None = None) -> list[Outcome]:
    """Run every job that is not finished, one after the other; never stops at a failure.

    ``env`` overrides environment variables of the ``nnUNetv2_train`` processes, e.g. the
    ``nnUNet_results`` that ``layout`` lies in (a pre-training checkpoint's own results root,
    :mod:`.pretraining_curve`, or a repeated run's, :mod:`.repeats`)."""
    outcomes = []
    for job in jobs:
        fold_dir = layout.fold_dir(job.setup.trainer, job.fold)
        action = decide_action(fold_dir)
        out.write(f"{job.prefix} {action.value}: {fold_dir}\n")
        if action is not Action.TRAIN:
            warning = _weights_warning(fold_dir, job, pretrained_weights)
            if warning:
                out.write(f"{job.prefix} {warning}\n")
            conflict = _learning_rate_conflict(fold_dir, job)
            if conflict:
                out.write(f"{job.prefix} FAILED: {conflict}\n")
                outcomes.append(Outcome(job, action, conflict))
                continue
        if action is Action.SKIP:
            outcomes.append(Outcome(job, action))
            continue
        command = train_command(executable, dataset, layout, job, action, pretrained_weights, device)
        out.write(f"{job.prefix} $ {' '.join(command)}\n")
        out.flush()
        try:
            returncode = _stream(command, job.prefix, out, {**(env or {}), **job.environment()})
        except OSError as e:
            outcomes.append(Outcome(job, action, f"could not start {command[0]}: {e}"))
            continue
        if returncode != 0:
            error = f"nnUNetv2_train exited with code {returncode}"
        elif not (fold_dir / SUMMARY).is_file():
            error = f"nnUNetv2_train finished but wrote no {fold_dir / SUMMARY}"
        else:
            error = None
        out.write(f"{job.prefix} {'done' if error is None else 'FAILED: ' + error}\n")
        outcomes.append(Outcome(job, action, error))
    return outcomes
