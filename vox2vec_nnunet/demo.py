"""The one-command demo: phantoms -> pre-training -> linear probes (pre-trained vs random FPN).

``--modality mr`` runs it on MR phantoms (the same subjects and labels, T2-weighted, in
arbitrary units: :mod:`vox2vec_nnunet.phantoms.mr`) in datasets of their own (602 and 902), so
CT and MR runs share a workspace without mixing; nnU-Net z-scores the MR channel.

Everything runs through the real commands, in a workspace of its own (its own ``nnUNet_raw``,
``nnUNet_preprocessed`` and ``nnUNet_results``), so a user sees the product exactly as they
would use it, at a scale a 2-core CPU finishes in minutes (docs/method.md, "What a small CPU run
can show"): phantoms at
6 x 3 x 3 mm, patches of 16 x 64 x 64, an FPN of 8 base channels and 5 levels, 300
pre-training iterations of 4 volumes x 256 positions with seed 0, and 500-iteration linear
probes at learning rate 3e-3 with 3-fold cross-validation (``--pretrain_seeds 0 1 2``: one
pre-training per seed, the linear probe of each, and its spread over the seeds). The
comparison is the paper's Fig. 2 one at a short, fixed probe budget, where pre-training shows
most (few labels, fixed budget); the random baseline is the same FPN frozen at its random
initialisation with its BatchNorm statistics re-estimated on the training data (the stronger
of the two random baselines: without re-estimation the random features are so small that a
probe at this budget does not leave the all-background solution). Every step resumes when the demo is run again.

``--table1`` is a separate, longer mode: after the same pre-training (the first seed's) it runs every setup of the
paper's Table 1 (from scratch, linear and non-linear probing, fine-tuning and the random-FPN
baselines, both kinds) at the same demo budget on the same folds, then from scratch,
fine-tuning and non-linear probing on 1, 2 and 4 labeled cases per fold, and writes the table
(with each setup's paired difference to from scratch) and the Dice-vs-labeled-cases figure.
``--repeats R`` trains every fold of that mode R times (nnU-Net's training is not deterministic)
and counts each fold as the mean of its runs, with the run-to-run spread beside it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.nnunet_env import trainers_dir, training_env
from vox2vec_nnunet.phantoms import MRConfig, PhantomConfig, write_nnunet_raw_dataset
from vox2vec_nnunet.training.budgets import SEGMENTATION_BUDGETS
from vox2vec_nnunet.training.segmentation import Vox2VecTrainer_FineTune, finetune_schedule
from vox2vec_nnunet.training.variants import seeded_name

#: Per modality: the labeled phantoms' dataset (ID, name) and the pre-training dataset's.
DATASETS = {"ct": ((601, "DemoPhantoms"), (901, "Vox2VecPretraining")),
            "mr": ((602, "DemoMRPhantoms"), (902, "Vox2VecPretrainingMR"))}
PLANS, SEG_CONFIG, PRE_CONFIG = "Vox2VecPlans", "3d_vox2vec", "3d_vox2vec_pretrain"
TABLE1_SETUPS = ("scratch", "linear_probe", "nonlinear_probe", "finetune", "linear_probe_random",
                 "nonlinear_probe_random", "linear_probe_random_bn", "nonlinear_probe_random_bn")
LABELED_SETUPS = ("scratch", "finetune", "nonlinear_probe")
ECHO = ("Epoch ", "loss", "Dice", "Summary", "skipped", "wrote", "error", "Error", "Traceback", "[fold", "Using trainer")
ECHO_WIDTH = 120


@dataclass(frozen=True)
class DemoSettings:
    """What the demo's figures depend on; printed with the results."""

    workspace: Path
    labeled_phantoms: int = 9
    """Labeled phantoms generated (the cross-validation's cases)."""
    unlabeled: int = 16
    folds: int = 3
    trainer_variant: str = "Demo"
    device: str = "cpu"
    seed: int = 0
    spacing: tuple[str, str, str] = ("6", "3", "3")
    patch_size: tuple[str, str, str] = ("16", "64", "64")
    base_channels: int = 8
    num_levels: int = 5
    num_processes: int = 2
    table1: bool = False
    labeled_cases: tuple[int, ...] = (1, 2, 4)
    repeats: int = 1
    """Runs of every fold in the Table 1 mode (``vox2vec_nnunet_benchmark --repeats``)."""
    pretrain_seeds: tuple[int, ...] = (0,)
    """One pre-training per seed; with several, the linear probe's spread over them."""
    modality: str = "ct"
    """Phantoms scanned by ``ct`` (:class:`PhantomConfig`) or ``mr`` (:class:`MRConfig`, T2)."""

    def __post_init__(self) -> None:
        if self.modality not in DATASETS:
            raise Vox2VecError(f"modality must be one of {sorted(DATASETS)}, got {self.modality!r}")

    @property
    def labeled_id(self) -> int:
        return DATASETS[self.modality][0][0]

    @property
    def labeled_name(self) -> str:
        return f"Dataset{self.labeled_id:03d}_{DATASETS[self.modality][0][1]}"

    @property
    def pretrain_id(self) -> int:
        return DATASETS[self.modality][1][0]

    @property
    def pretrain_name(self) -> str:
        return f"Dataset{self.pretrain_id:03d}_{DATASETS[self.modality][1][1]}"

    @property
    def phantom_config(self) -> PhantomConfig | MRConfig:
        return MRConfig() if self.modality == "mr" else PhantomConfig()

    @property
    def fpn_args(self) -> list[str]:
        return ["--spacing", *self.spacing, "--patch_size", *self.patch_size, "--base_channels",
                str(self.base_channels), "--num_levels", str(self.num_levels), "-np", str(self.num_processes)]


class Demo:
    def __init__(self, settings: DemoSettings) -> None:
        self.s = settings
        self.start = time.time()
        self.env = training_env(os.environ)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            folder = settings.workspace / name
            folder.mkdir(parents=True, exist_ok=True)
            self.env[name] = str(folder)
        extra = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
        self.env["nnUNet_extTrainer"] = os.pathsep.join([str(trainers_dir()), *extra])
        self.env.setdefault("nnUNet_n_proc_DA", str(max(1, settings.num_processes - 1)))
        self.env.setdefault("nnUNet_def_n_proc", str(settings.num_processes))
        self.log_folder = settings.workspace / "logs"
        self.log_folder.mkdir(exist_ok=True)

    def path(self, variable: str) -> Path:
        return Path(self.env[variable])

    def step(self, title: str) -> None:
        print(f"\n[{time.time() - self.start:6.0f} s] == {title}", flush=True)

    def run(self, name: str, args: list[str]) -> None:
        """Run a command, log all of it, echo its progress lines; fail clearly."""
        log = self.log_folder / f"{name}.log"
        print(f"$ {' '.join(map(str, args))}\n  (full output: {log})", flush=True)
        # A private temporary folder per command: multiprocessing's pymp-* folders of data workers
        # that nnU-Net terminates are removed with it instead of piling up. It stays in the system's
        # temporary folder: the workers' sockets live there, and a socket path may not exceed 107 bytes.
        with open(log, "a") as handle, tempfile.TemporaryDirectory(prefix="vox2vec-demo-") as tmp:
            process = subprocess.Popen([str(a) for a in args], env={**self.env, "TMPDIR": tmp},
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in process.stdout:
                handle.write(line)
                if any(key in line for key in ECHO):
                    print(textwrap.fill(line.rstrip(), width=ECHO_WIDTH, initial_indent="  ",
                                        subsequent_indent="    ", break_long_words=False), flush=True)
            if process.wait() != 0:
                raise Vox2VecError(f"`{' '.join(map(str, args))}` failed (exit {process.returncode}); see {log}")

    def trainer(self, name: str) -> str:
        return f"{name}_{self.s.trainer_variant}"

    def phantoms(self) -> None:
        self.step(f"1/5 {self.s.modality.upper()} phantoms: {self.s.labeled_phantoms} labeled + {self.s.unlabeled} "
                  f"unlabeled (seed {self.s.seed})")
        raw = self.path("nnUNet_raw")
        if (raw / self.s.labeled_name / "dataset.json").is_file():
            print(f"  already there: {raw / self.s.labeled_name}")
            return
        write_nnunet_raw_dataset(raw, self.s.labeled_id, DATASETS[self.s.modality][0][1], self.s.labeled_phantoms,
                                 self.s.unlabeled, self.s.seed, self.s.phantom_config,
                                 num_processes=self.s.num_processes)

    def plan(self) -> None:
        self.step("2/5 vox2vec plans and nnU-Net preprocessing of the labeled phantoms")
        if (self.path("nnUNet_preprocessed") / self.s.labeled_name / f"{PLANS}_{SEG_CONFIG}").is_dir():
            print("  already preprocessed")
            return
        self.run("plan", ["vox2vec_nnunet_plan", "-d", self.s.labeled_id, "--batch_size", "2", *self.s.fpn_args])

    def pretrain(self, seed: int) -> Path:
        self.step(f"3/5 pre-training data (all phantom images, labels unused) and vox2vec pre-training, seed {seed}")
        self.run("prepare_pretraining", ["vox2vec_nnunet_prepare_pretraining", "-d", self.s.labeled_id, "-o",
                                         self.s.pretrain_id, "--name", DATASETS[self.s.modality][1][1],
                                         *self.s.fpn_args])
        trainer = seeded_name(self.trainer("Vox2VecPretrainTrainer"), seed)
        folder = self.path("nnUNet_results") / self.s.pretrain_name / f"{trainer}__{PLANS}__{PRE_CONFIG}" / "fold_all"
        final = folder / "checkpoint_final.pth"
        if final.is_file():
            print(f"  already pre-trained: {final}")
            return final
        resume = ["--c"] if (folder / "checkpoint_latest.pth").is_file() else []
        self.run(f"pretrain_seed{seed}", ["nnUNetv2_train", self.s.pretrain_id, PRE_CONFIG, "all", "-p", PLANS, "-tr",
                                          trainer, "-device", self.s.device, *resume])
        print(f"  loss curve: {folder / 'progress.png'}")
        return final

    def probe(self, weights: Path) -> Path:
        self.step(f"4/5 linear probes, {self.s.folds}-fold cross-validation: pre-trained FPN vs random FPN "
                  f"(BatchNorm statistics re-estimated)")
        output = self.s.workspace / "benchmark"
        self.run("benchmark", ["vox2vec_nnunet_benchmark", "-d", self.s.labeled_id, "-p", PLANS, "-c", SEG_CONFIG,
                               "--setups", "linear_probe", "linear_probe_random_bn", "--folds", self.s.folds,
                               "--pretrained_weights", weights, "--run", "-device", self.s.device,
                               "--trainer_variant", self.s.trainer_variant, "-o", output])
        return output

    def probe_seeds(self, weights: list[Path]) -> Path:
        self.step(f"4/5 linear probes of each pre-training seed's FPN ({', '.join(map(str, self.s.pretrain_seeds))}) "
                  f"and of a random FPN (BatchNorm statistics re-estimated), {self.s.folds}-fold cross-validation")
        output = self.s.workspace / "benchmark_seeds"
        self.run("benchmark_seeds", ["vox2vec_nnunet_benchmark", "-d", self.s.labeled_id, "-p", PLANS, "-c", SEG_CONFIG,
                                     "--setups", "linear_probe", "linear_probe_random_bn", "--folds", self.s.folds,
                                     "--pretraining_curve", *weights, "--run", "-device", self.s.device,
                                     "--trainer_variant", self.s.trainer_variant, "-o", output])
        return output

    def report(self, output: Path) -> None:
        self.step("5/5 results")
        seeds = len(self.s.pretrain_seeds) > 1
        print((output / ("pretraining_curve.md" if seeds else "dice_table.md")).read_text())
        print(f"Settings: {self.s.modality.upper()} phantoms {self.s.labeled_phantoms} labeled / {self.s.unlabeled} "
              f"unlabeled at "
              f"{'x'.join(self.s.spacing)} mm, patch {'x'.join(self.s.patch_size)}, FPN {self.s.base_channels} base "
              f"channels x {self.s.num_levels} levels; trainers *_{self.s.trainer_variant} (budgets in "
              f"vox2vec_nnunet/training/budgets.py), pre-training "
              f"seed(s) {', '.join(map(str, self.s.pretrain_seeds))}; random baseline = the same FPN frozen at random "
              f"initialisation, BatchNorm statistics re-estimated on 20 training batches; device {self.s.device}.")
        table, figure = ("pretraining_curve", "dice_vs_pretraining") if seeds else ("dice_table", "dice_vs_parameters")
        print(f"Table: {output / table}.md and .csv\nFigure: {output / figure}.png\n"
              f"Workspace: {self.s.workspace} (run again to resume; delete it to start over)\n"
              f"Total time: {time.time() - self.start:.0f} s")


    def benchmark(self, name: str, weights: Path, setups: tuple[str, ...], labeled_cases: tuple[int, ...] = ()) -> Path:
        output = self.s.workspace / name
        self.run(name, ["vox2vec_nnunet_benchmark", "-d", self.s.labeled_id, "-p", PLANS, "-c", SEG_CONFIG,
                        "--setups", *setups, "--folds", self.s.folds, "--pretrained_weights", weights, "--run",
                        "-device", self.s.device, "--trainer_variant", self.s.trainer_variant, "-o", output,
                        "--repeats", self.s.repeats, *(["--labeled", *labeled_cases] if labeled_cases else [])])
        return output

    def table1(self, weights: Path) -> tuple[Path, Path]:
        runs = "" if self.s.repeats == 1 else f", {self.s.repeats} runs of each fold"
        self.step(f"4/5 Table 1: {len(TABLE1_SETUPS)} setups x {self.s.folds} folds, then "
                  f"{', '.join(LABELED_SETUPS)} on {', '.join(map(str, self.s.labeled_cases))} labeled cases{runs}")
        table = self.benchmark("table1", weights, TABLE1_SETUPS)
        labeled = self.benchmark("table1_labeled", weights, LABELED_SETUPS, self.s.labeled_cases)
        return table, labeled

    def table1_settings(self) -> str:
        runs = ("one run of each fold" if self.s.repeats == 1 else
                f"{self.s.repeats} runs of each fold, a fold counts as the mean of its runs")
        budget = SEGMENTATION_BUDGETS.get(self.s.trainer_variant)
        if budget is None:
            schedule = f"trainers *_{self.s.trainer_variant}"
        else:
            freeze, warmup = finetune_schedule(budget.total_iterations)
            rates = ", ".join(f"{n} {budget.learning_rate(n):g}" for n in dict.fromkeys((*TABLE1_SETUPS, *LABELED_SETUPS)))
            schedule = (f"every setup {budget.describe()} (trainers *_{budget.name}), learning rates {rates}; "
                        f"fine-tuning: backbone "
                        f"frozen for {freeze} iterations, then its lr rises {Vox2VecTrainer_FineTune.backbone_start_lr:g} "
                        f"-> {Vox2VecTrainer_FineTune.backbone_end_lr:g} over {warmup}")
        return (f"Settings: {self.s.modality.upper()} phantoms {self.s.labeled_phantoms} labeled / "
                f"{self.s.unlabeled} unlabeled at "
                f"{'x'.join(self.s.spacing)} mm, patch {'x'.join(self.s.patch_size)}, FPN {self.s.base_channels} "
                f"base channels x {self.s.num_levels} levels; {self.s.folds} folds; {schedule}; random baselines: "
                f"the same FPN frozen at random initialisation, with and without BatchNorm statistics "
                f"re-estimated on 20 training batches; few labels: {', '.join(map(str, self.s.labeled_cases))} "
                f"labeled cases drawn from each fold's training cases; {runs}; device {self.s.device}.")

    def report_table1(self, table: Path, labeled: Path) -> None:
        self.step("5/5 results")
        print((table / "dice_table.md").read_text())
        print((labeled / "label_efficiency.md").read_text())
        print(self.table1_settings())
        print(f"Table: {table / 'dice_table.md'} and .csv\nFigures: {table / 'dice_vs_parameters.png'}, "
              f"{labeled / 'dice_vs_labeled.png'}\nWorkspace: {self.s.workspace} (run again to resume)\n"
              f"Total time: {time.time() - self.start:.0f} s")


def run_demo(settings: DemoSettings) -> int:
    demo = Demo(settings)
    print(f"vox2vec-nnunet demo in {settings.workspace} on {settings.device} ({sys.executable})")
    demo.phantoms()
    demo.plan()
    weights = [demo.pretrain(seed) for seed in settings.pretrain_seeds]
    if settings.table1:
        demo.report_table1(*demo.table1(weights[0]))
    else:
        demo.report(demo.probe(weights[0]) if len(weights) == 1 else demo.probe_seeds(weights))
    return 0
