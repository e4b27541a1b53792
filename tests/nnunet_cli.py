"""Running real nnU-Net and vox2vec commands in a throwaway nnU-Net environment."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from vox2vec_nnunet.nnunet_env import trainers_dir

TEST_TRAINERS = Path(__file__).resolve().parent / "trainers"


def nnunet_env(root: Path) -> dict[str, str]:
    """Environment for a CPU run with its own nnU-Net folders and the test trainer variants."""
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / name)
    env["nnUNet_extTrainer"] = os.pathsep.join([str(trainers_dir()), str(TEST_TRAINERS)])
    env["nnUNet_def_n_proc"] = "1"
    env["nnUNet_n_proc_DA"] = "1"
    env["nnUNet_compile"] = "false"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run(args: list[str], env: dict[str, str], expect_ok: bool = True, timeout: int = 900
        ) -> subprocess.CompletedProcess:
    """Run a command; on an unexpected outcome fail with its output."""
    result = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    if (result.returncode == 0) != expect_ok:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}\n--- stdout\n"
                             f"{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")
    return result


def train_from_pretrained(env: dict[str, str], dataset: int, configuration: str, fold: str, plans: str,
                          trainer: str, weights: Path) -> tuple[Path, str]:
    """``nnUNetv2_train`` of ``trainer`` from ``-pretrained_weights weights`` on the CPU; checks that the
    run recorded a pre-trained backbone and returns its fold folder and newest training log."""
    run(["nnUNetv2_train", dataset, configuration, fold, "-p", plans, "-tr", trainer, "-device", "cpu",
         "-pretrained_weights", weights], env)
    (folder,) = Path(env["nnUNet_results"]).glob(f"Dataset{dataset:03d}_*/{trainer}__{plans}__{configuration}/"
                                                 f"fold_{fold}")
    assert json.loads((folder / "vox2vec_run.json").read_text())["backbone_source"] == "pretrained"
    return folder, sorted(folder.glob("training_log_*.txt"))[-1].read_text()


def predict_on_cpu(env: dict[str, str], images: Path, output: Path, dataset: int, configuration: str, plans: str,
                   trainer: str, *folds: str) -> None:
    """``nnUNetv2_predict`` with ``folds`` (their ensemble if several) on the CPU, without test-time
    mirroring, one process each."""
    run(["nnUNetv2_predict", "-i", images, "-o", output, "-d", dataset, "-c", configuration, "-p", plans, "-tr",
         trainer, "-f", *folds, "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], env)
