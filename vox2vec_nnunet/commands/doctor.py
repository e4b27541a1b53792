"""``vox2vec_nnunet_doctor``: check the environment nnU-Net and vox2vec need, print the fixes."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

from vox2vec_nnunet.errors import command
from vox2vec_nnunet.nnunet_env import NNUNET_PATH_VARIABLES, trainers_dir

TRAINER_NAMES = ("Vox2VecTrainer", "Vox2VecPretrainTrainer")


def trainer_discovery_problem() -> str | None:
    """Ask nnU-Net itself (in a fresh process, as nnUNetv2_train would) to find our trainers."""
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            f"for n in {TRAINER_NAMES!r}:\n"
            "    c = f(n); print('FOUND', n, c.__module__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    found = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("FOUND")]
    if set(found) == set(TRAINER_NAMES):
        return None
    missing = sorted(set(TRAINER_NAMES) - set(found))
    tail = (result.stderr.strip().splitlines() or ["no message"])[-1]
    return f"nnU-Net does not find {', '.join(missing)} ({tail})"


@command
def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="vox2vec_nnunet_doctor",
                            description="Check nnU-Net's environment variables, that nnUNetv2_train finds the "
                                        "vox2vec trainers, and which torch device training will use; print the "
                                        "exact lines that fix what is missing.").parse_args(argv)
    fixes: list[str] = []
    for name in NNUNET_PATH_VARIABLES:
        value = os.environ.get(name)
        if not value:
            print(f"[missing] {name} is not set")
            fixes.append(f"export {name}=/path/to/{name}")
        elif not os.path.isdir(value):
            print(f"[missing] {name}={value} does not exist")
            fixes.append(f"mkdir -p {value}")
        else:
            print(f"[ok]      {name}={value}")
    expected = str(trainers_dir())
    ext = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if expected not in [os.path.realpath(p) for p in ext]:
        print(f"[missing] nnUNet_extTrainer does not list the vox2vec trainers folder {expected}")
        fixes.append(f'export nnUNet_extTrainer="{os.pathsep.join(ext + [expected])}"')
    else:
        problem = trainer_discovery_problem()
        print(f"[broken]  {problem}" if problem else f"[ok]      nnUNetv2_train finds {', '.join(TRAINER_NAMES)}")
        if problem:
            fixes.append("reinstall the package (pip install .) and check that every folder in nnUNet_extTrainer "
                         "holds only importable trainer modules (one broken module breaks every lookup)")
    if torch.cuda.is_available():
        print(f"[ok]      torch {torch.__version__}: CUDA device {torch.cuda.get_device_name(0)} "
              f"({torch.cuda.device_count()} visible)")
    else:
        print(f"[note]    torch {torch.__version__}: no CUDA device; the vox2vec trainers fall back to the CPU "
              f"(-device cpu), which suits small models only")
    if fixes:
        print("\nTo fix, run (or add to your shell profile):")
        for line in fixes:
            print(f"  {line}")
        return 1
    print("\nAll set.")
    return 0
