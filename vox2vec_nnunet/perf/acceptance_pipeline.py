"""The data and the two end-to-end parts of the GPU acceptance run, through the real commands.

Everything runs in a workspace of its own (its own ``nnUNet_raw``, ``nnUNet_preprocessed`` and
``nnUNet_results``; ``nnUNet_extTrainer`` pointing at the installed trainer folder, where
``vox2vec_acceptance_trainers`` re-exports the short variants of
:mod:`vox2vec_nnunet.training.acceptance_variants`), as the demo runs its commands. nnU-Net's
``torch.compile`` is off (``nnUNet_compile=false``): compiling would take minutes of a run
that must stay short.

* data: clinical phantoms (``vox2vec_nnunet_phantoms --clinical``: labeled cases in imagesTr, the
  rest in imagesTs) and the FPN's pre-training data from all of them
  (``vox2vec_nnunet_prepare_pretraining``);
* the FPN arm (part 3): the labeled cases planned for the FPN (``vox2vec_nnunet_plan``);
  pre-training through ``torchrun --standalone --nproc_per_node 1`` (nnU-Net's training module;
  the trainer joins torchrun's process group, wraps the network in DistributedDataParallel with
  global BatchNorm), killed with SIGKILL (the launcher, the trainer and its data workers) as
  soon as its first checkpoint exists, resumed with ``--c`` to the end; fine-tuning from its
  final checkpoint (``-pretrained_weights``) on fold ``all`` (nnU-Net's pseudo Dice on
  training batches, as fold ``all`` validates on its training cases); ``nnUNetv2_predict`` of one
  clinical-size scan (one of the unlabeled ones);
* the ResEnc U-Net arm (part 4): ``nnUNetv2_plan_and_preprocess`` with nnU-Net's ResEnc planner,
  pre-training data for that plans configuration (``--plans``), pre-training of the plans'
  U-Net, fine-tuning with nnU-Net's own ``-pretrained_weights``, ``nnUNetv2_predict``.

Each function fills ``figures`` as its steps finish (a part that fails keeps the figures of the
steps before) and raises :class:`PartFailed` with a one-line reason.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from vox2vec_nnunet.nnunet_env import trainers_dir, training_env
from vox2vec_nnunet.perf.acceptance_processes import Commands, Deadline, PartFailed, kill_tree
from vox2vec_nnunet.perf.acceptance_scale import Scale
from vox2vec_nnunet.weights import load_weights_file

LABELED_ID, FPN_PRETRAIN_ID, UNET_PRETRAIN_ID = 981, 982, 983
LABELED_NAME = "Dataset981_AcceptanceClinical"
FPN_PRETRAIN_NAME, UNET_PRETRAIN_NAME = "Dataset982_AcceptanceFPN", "Dataset983_AcceptanceUNet"
FPN_PLANS, FPN_SEG, FPN_PRE = "Vox2VecPlans", "3d_vox2vec", "3d_vox2vec_pretrain"
UNET_CONFIGURATION = "3d_fullres"
MARKER = ".vox2vec_gpu_acceptance"
"""File that marks a workspace this run made (and may therefore delete when it starts again)."""
POLL_SECONDS = 0.05


@dataclass
class Workspace:
    root: Path
    scale: Scale
    commands: Commands

    @classmethod
    def fresh(cls, root: Path, scale: Scale) -> "Workspace":
        """A new workspace at ``root``; one left by an earlier run (it has the marker) is replaced."""
        if root.exists():
            if not (root / MARKER).is_file():
                raise PartFailed(f"{root} exists and was not made by this command; choose another -o")
            shutil.rmtree(root)
        env = training_env(os.environ)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / name).mkdir(parents=True)
            env[name] = str(root / name)
        (root / MARKER).write_text("made by python -m vox2vec_nnunet.perf.gpu_acceptance\n")
        extra = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
        env.update(nnUNet_extTrainer=os.pathsep.join([str(trainers_dir()), *extra]), nnUNet_compile="false",
                   nnUNet_n_proc_DA=str(scale.training_workers), nnUNet_def_n_proc=str(scale.processes))
        return cls(root, scale, Commands(env, root / "logs"))

    def path(self, variable: str) -> Path:
        return Path(self.commands.env[variable])

    @property
    def predict_input(self) -> Path:
        return self.root / "predict_input"


def make_data(ws: Workspace, deadline: Deadline, figures: dict) -> None:
    """Clinical phantoms and the FPN's pre-training data; the scan that both arms predict."""
    s = ws.scale
    options = ["--clinical", "--slices", *map(str, s.slices), "--downsample", str(s.downsample)]
    if s.slice_mm is not None:
        options += ["--slice_mm", *map(str, s.slice_mm)]
    phantoms = ws.commands.run("phantoms", ["vox2vec_nnunet_phantoms", "-d", LABELED_ID, "-n", s.labeled, "--unlabeled",
                                            s.unlabeled, "--name", "AcceptanceClinical", *options,
                                            "-np", s.processes, "--no_pbar"], deadline)
    raw = ws.path("nnUNet_raw") / LABELED_NAME
    scans = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
    if not scans:
        raise PartFailed(f"no unlabeled scan in {raw / 'imagesTs'} to predict")
    ws.predict_input.mkdir()
    shutil.copy(scans[0], ws.predict_input / scans[0].name)
    shapes = [list(sitk.ReadImage(str(f)).GetSize())[::-1] for f in sorted(raw.glob("images*/*.nii.gz"))]
    figures.update(cases=s.labeled + s.unlabeled, scan_shapes_zyx=shapes, phantoms_seconds=phantoms.seconds,
                   predict_scan=str(ws.predict_input / scans[0].name))
    prepared = ws.commands.run("prepare_fpn", [
        "vox2vec_nnunet_prepare_pretraining", "-d", LABELED_ID, "-o", FPN_PRETRAIN_ID, "--name", "AcceptanceFPN",
        *s.fpn_options(), "--num_positions", s.num_positions, "-np", s.processes], deadline)
    cases = len(list((ws.path("nnUNet_preprocessed") / FPN_PRETRAIN_NAME / f"{FPN_PLANS}_{FPN_PRE}").glob("*.pkl")))
    if cases == 0:
        raise PartFailed(f"vox2vec_nnunet_prepare_pretraining prepared no case; see {ws.commands.log('prepare_fpn')}")
    figures.update(prepared_cases=cases, prepare_seconds=prepared.seconds)


def _checkpoint_record(path: Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"vox2vec": checkpoint.get("vox2vec"), "logging": checkpoint["logging"]}


def _iterations_per_second(logging: dict, first_epoch: int, iterations_per_epoch: int) -> float:
    """Median over the epochs from ``first_epoch`` of the iterations per second (epoch start to end)."""
    durations = [end - start for start, end in zip(logging["epoch_start_timestamps"][first_epoch:],
                                                   logging["epoch_end_timestamps"][first_epoch:])]
    return iterations_per_epoch / float(np.median(durations))


def _predict(ws: Workspace, name: str, dataset: int, configuration: str, plans: str, trainer: str,
             deadline: Deadline) -> dict:
    """``nnUNetv2_predict`` of the one scan in nnU-Net's sequential mode (``-npp 0 -nps 0``:
    preprocessing, sliding window and export in one process); its wall time, start-up and model
    loading included."""
    output = ws.root / f"predictions_{name}"
    done = ws.commands.run(f"predict_{name}", [
        "nnUNetv2_predict", "-i", ws.predict_input, "-o", output, "-d", dataset, "-c", configuration, "-p", plans,
        "-tr", trainer, "-f", "all", "-device", ws.scale.device, "--disable_tta", "-npp", "0", "-nps", "0"], deadline)
    (scan,) = ws.predict_input.glob("*_0000.nii.gz")
    prediction = output / scan.name.replace("_0000.nii.gz", ".nii.gz")
    if not prediction.is_file():
        raise PartFailed(f"nnUNetv2_predict wrote no {prediction}; see {ws.commands.log(f'predict_{name}')}")
    image, labels = sitk.ReadImage(str(scan)), sitk.ReadImage(str(prediction))
    if image.GetSize() != labels.GetSize():
        raise PartFailed(f"{prediction} has size {labels.GetSize()}, the scan {image.GetSize()}")
    present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)))
    return {"seconds_per_scan": done.seconds, "scan_shape_zyx": list(image.GetSize())[::-1], "labels_present": present}


def _finetune(ws: Workspace, name: str, configuration: str, plans: str, trainer: str, weights: Path,
              deadline: Deadline) -> dict:
    done = ws.commands.run(f"finetune_{name}", [
        "nnUNetv2_train", LABELED_ID, configuration, "all", "-p", plans, "-tr", trainer, "-device", ws.scale.device,
        "-pretrained_weights", weights], deadline)
    fold = ws.path("nnUNet_results") / LABELED_NAME / f"{trainer}__{plans}__{configuration}" / "fold_all"
    record = json.loads((fold / "vox2vec_run.json").read_text())
    if record["backbone_source"] != "pretrained":
        raise PartFailed(f"{fold / 'vox2vec_run.json'}: the fine-tuned network did not start from the pre-trained "
                         f"weights ({record['backbone_source']})")
    final = fold / "checkpoint_final.pth"
    if not final.is_file():
        raise PartFailed(f"the fine-tuning wrote no {final}")
    logging = load_weights_file(final, "nnU-Net's checkpoint_final.pth of this fine-tuning")["logging"]
    return {"seconds": done.seconds, "pseudo_dice": float(logging["ema_fg_dice"][-1]),
            "backbone_source": record["backbone_source"]}


def _torchrun(ws: Workspace, *extra: str) -> list:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "1",
            "--max_restarts", "0", "-m", "nnunetv2.run.run_training", FPN_PRETRAIN_ID, FPN_PRE, "all", "-p", FPN_PLANS,
            "-tr", ws.scale.pretrain_trainer, "-device", ws.scale.device, *extra]


def _kill_after_first_checkpoint(ws: Workspace, fold: Path, deadline: Deadline) -> dict:
    """Start the torchrun pre-training, SIGKILL all its processes once ``checkpoint_latest.pth``
    exists; the record of that checkpoint."""
    began = time.monotonic()
    process, tmp = ws.commands.start("pretrain_fpn_killed", _torchrun(ws))
    latest = fold / "checkpoint_latest.pth"
    while not latest.is_file() and process.poll() is None and deadline.remaining() > 0:
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - began
    ended_by_itself = process.poll() is not None
    killed = kill_tree(process)
    tmp.cleanup()
    ws.commands.seconds["pretrain_fpn_killed"] = seconds
    log = ws.commands.log("pretrain_fpn_killed")
    if not latest.is_file():
        reason = (f"exited with {process.returncode} before its first checkpoint" if ended_by_itself else
                  "had written no checkpoint at the part's time limit")
        raise PartFailed(f"the torchrun pre-training {reason}; see {log}")
    if ended_by_itself or (fold / "checkpoint_final.pth").exists():
        raise PartFailed(f"the torchrun pre-training finished before it could be killed part-way; see {log}")
    record = _checkpoint_record(latest)["vox2vec"]
    print(f"  killed {killed} processes (torchrun, the trainer, its data workers) after {seconds:.0f} s, at the "
          f"checkpoint of iteration {record['iteration']}", flush=True)
    return {"killed_processes": killed, "seconds_until_kill": seconds, "killed_at_iteration": record["iteration"]}


_DEVICE_PATHS = re.compile(r"augmentation on (the training device \(\w+\)|the CPU workers) \((\d+) workers\), "
                           r"backbone autocast (bfloat16|off \(float32\))")


def _device_paths(output: str, scale: Scale, log: Path) -> dict:
    """Where the pre-training augmented and in which precision its backbone ran, from its log
    line; on CUDA both must be the GPU paths (augmentation on the device, bfloat16 backbone)."""
    found = _DEVICE_PATHS.search(output)
    if found is None:
        raise PartFailed(f"the pre-training log has no line on its augmentation and autocast; see {log}")
    augmentation, workers, autocast = found.groups()
    if scale.device == "cuda" and (augmentation != "the training device (cuda)" or autocast != "bfloat16"):
        raise PartFailed(f"the pre-training on CUDA augmented on {augmentation} with backbone autocast {autocast}: "
                         f"not the GPU paths; see {log}")
    return {"augmentation": augmentation, "data_workers": int(workers), "backbone_autocast": autocast}


def fpn_arm(ws: Workspace, deadline: Deadline, figures: dict) -> None:
    """Part 3; see the module docstring."""
    s = ws.scale
    batch = ["--batch_size", str(s.segmentation_batch_size)] if s.segmentation_batch_size else []
    plan = ws.commands.run("plan_fpn", ["vox2vec_nnunet_plan", "-d", LABELED_ID, *s.fpn_options(), *batch,
                                        "-np", s.processes], deadline)
    figures["plan_seconds"] = plan.seconds
    fold = (ws.path("nnUNet_results") / FPN_PRETRAIN_NAME / f"{s.pretrain_trainer}__{FPN_PLANS}__{FPN_PRE}" /
            "fold_all")
    killed = _kill_after_first_checkpoint(ws, fold, deadline)
    figures["pretrain"] = dict(killed)
    resumed = ws.commands.run("pretrain_fpn_resumed", _torchrun(ws, "--c"), deadline)
    final = fold / "checkpoint_final.pth"
    if not final.is_file():
        raise PartFailed(f"the resumed pre-training wrote no {final}")
    record = _checkpoint_record(final)
    run, logging = record["vox2vec"], record["logging"]
    epochs = run["epoch"]
    iterations_per_epoch = run["iteration"] // epochs
    checks = {"rank 0 of 1 (torchrun)": "did not run as a torchrun process",
              "pre-training seed: 0 (from the checkpoint)": "did not take its seed from the checkpoint",
              f"starting at iteration {killed['killed_at_iteration']:,}": "did not continue from the killed run's "
                                                                          "iteration"}
    for line, problem in checks.items():
        if line not in resumed.output:
            raise PartFailed(f"the resumed pre-training {problem} (no '{line}' in "
                             f"{ws.commands.log('pretrain_fpn_resumed')})")
    losses = logging["train_losses"]
    if len(losses) != epochs or not np.all(np.isfinite(losses)):
        raise PartFailed(f"{final}: {len(losses)} epoch losses for {epochs} epochs, finite: "
                         f"{bool(np.all(np.isfinite(losses)))}")
    killed_epoch = killed["killed_at_iteration"] // iterations_per_epoch
    speed = _iterations_per_second(logging, killed_epoch, iterations_per_epoch)
    figures["pretrain"].update(resumed_seconds=resumed.seconds, final_iteration=run["iteration"], losses=losses,
                               **_device_paths(resumed.output, s, ws.commands.log("pretrain_fpn_resumed")),
                               iterations_per_second=speed)
    figures["finetune"] = _finetune(ws, "fpn", FPN_SEG, FPN_PLANS, s.finetune_trainer, final, deadline)
    figures["predict"] = _predict(ws, "fpn", LABELED_ID, FPN_SEG, FPN_PLANS, s.finetune_trainer, deadline)


def unet_arm(ws: Workspace, deadline: Deadline, figures: dict) -> None:
    """Part 4; see the module docstring."""
    s = ws.scale
    plan = ws.commands.run("plan_unet", ["nnUNetv2_plan_and_preprocess", "-d", LABELED_ID, *s.unet_planner_options,
                                         "-c", UNET_CONFIGURATION, "-np", s.processes, "-npfp", s.processes], deadline)
    figures["plan_seconds"] = plan.seconds
    figures["patch"] = json.loads((ws.path("nnUNet_preprocessed") / LABELED_NAME / f"{s.unet_plans}.json").read_text())[
        "configurations"][UNET_CONFIGURATION]["patch_size"]
    prepared = ws.commands.run("prepare_unet", [
        "vox2vec_nnunet_prepare_pretraining", "-d", LABELED_ID, "-o", UNET_PRETRAIN_ID, "--name", "AcceptanceUNet",
        "--plans", s.unet_plans, "--configuration", UNET_CONFIGURATION, "--plans_dataset", LABELED_ID,
        "--num_positions", s.num_positions, "-np", s.processes], deadline)
    figures["prepare_seconds"] = prepared.seconds
    pretrained = ws.commands.run("pretrain_unet", [
        "nnUNetv2_train", UNET_PRETRAIN_ID, UNET_CONFIGURATION, "all", "-p", s.unet_plans, "-tr",
        s.unet_pretrain_trainer, "-device", s.device], deadline)
    fold = (ws.path("nnUNet_results") / UNET_PRETRAIN_NAME /
            f"{s.unet_pretrain_trainer}__{s.unet_plans}__{UNET_CONFIGURATION}" / "fold_all")
    final = fold / "checkpoint_final.pth"
    if not final.is_file():
        raise PartFailed(f"the U-Net pre-training wrote no {final}")
    record = _checkpoint_record(final)
    losses = record["logging"]["train_losses"]
    if not losses or not np.all(np.isfinite(losses)):
        raise PartFailed(f"{final}: epoch losses {losses}")
    iterations_per_epoch = record["vox2vec"]["iteration"] // record["vox2vec"]["epoch"]
    figures["pretrain"] = {"seconds": pretrained.seconds, "iterations": record["vox2vec"]["iteration"],
                           "losses": losses,
                           "iterations_per_second": _iterations_per_second(record["logging"], 0, iterations_per_epoch),
                           **_device_paths(pretrained.output, s, ws.commands.log("pretrain_unet"))}
    figures["finetune"] = _finetune(ws, "unet", UNET_CONFIGURATION, s.unet_plans, s.unet_finetune_trainer, final,
                                    deadline)
    figures["predict"] = _predict(ws, "unet", LABELED_ID, UNET_CONFIGURATION, s.unet_plans, s.unet_finetune_trainer,
                                  deadline)
