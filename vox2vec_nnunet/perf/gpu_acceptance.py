"""GPU acceptance in one command: every GPU path of the pre-training checked in a few minutes.

    python -m vox2vec_nnunet.perf.gpu_acceptance -o DIR [--cpu_smoke] [--total_seconds S]

It makes its own data and nnU-Net folders under ``DIR/workspace`` (replaced on the next run),
then runs, each part with a time limit of its own and the whole within ``--total_seconds``
(8 minutes on a GPU):

0. data: clinical-size phantoms and the FPN's pre-training data, with the project's commands;
1. step: the paper-scale pre-training step, ours (bfloat16 backbone, channels-last, augmentation
   on the device, blockwise InfoNCE) against the reference style (float32, NCDHW, dense logits),
   side by side: ms per iteration, ratio, peak memory, FLOPs and share of the bfloat16 peak
   (:mod:`vox2vec_nnunet.perf.acceptance_step`);
2. loader: batches per second of the trainer's own loader with 2, 6 and 12 workers
   (:mod:`vox2vec_nnunet.perf.acceptance_loader`), against the step's rate;
3. fpn: pre-training through ``torchrun --nproc_per_node 1``, killed part-way, resumed with
   ``--c``; fine-tuning from its checkpoint; ``nnUNetv2_predict`` of one clinical-size scan;
4. unet: the same for nnU-Net's ResEnc U-Net (:mod:`vox2vec_nnunet.perf.acceptance_pipeline`).

It prints one table and the claims, each met or not with its figure, and writes the same to
``DIR/gpu_acceptance.json`` (after every part, so a stopped run keeps what it measured). The exit
code is 0 when every part ran to its end (whatever the claims), else 1.
Without CUDA, or with ``--cpu_smoke``, every part runs at the CPU size of
:data:`vox2vec_nnunet.perf.acceptance_scale.CPU_SMOKE` (saying so); those figures are no GPU
figures. docs/gpu_acceptance.md explains every figure and claim.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.perf import acceptance_pipeline as pipeline
from vox2vec_nnunet.perf.acceptance_processes import Deadline, PartFailed, PartTimedOut
from vox2vec_nnunet.perf.acceptance_scale import CPU_SMOKE, GPU, Scale

PARTS = ("data", "step", "loader", "fpn", "unet")
RESULT_FILE = "gpu_acceptance.json"
GIB = 2 ** 30


class Run:
    """One acceptance run: the parts in order, their results, the JSON."""

    def __init__(self, output: Path, scale: Scale, scaled_down: str | None, total_seconds: float) -> None:
        self.output = output
        self.scale = scale
        self.began = time.monotonic()
        self.end = self.began + total_seconds
        self.workspace = pipeline.Workspace.fresh(output / "workspace", scale)
        self.result = {
            "command": " ".join([Path(sys.executable).name, "-m", "vox2vec_nnunet.perf.gpu_acceptance",
                                 *sys.argv[1:]]),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "scale": scale.name, "scaled_down": scaled_down, "total_seconds_limit": total_seconds,
            "machine": {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "cuda": torch.version.cuda,
                        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0},
            "settings": asdict(scale), "parts": {}, "claims": [], "total_seconds": None,
        }

    def save(self) -> None:
        path = self.output / RESULT_FILE
        write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(self.result, indent=2)))

    def part(self, name: str, body: Callable[[Deadline, dict], None], needs: tuple[str, ...] = ()) -> None:
        """Run one part within its time limit; record ok / failed / timeout / skipped, a line, and
        the figures the part had measured."""
        missing = [n for n in needs if self.result["parts"][n]["status"] != "ok"]
        began = time.monotonic()
        commands_before = set(self.workspace.commands.seconds)
        print(f"\n[{began - self.began:5.0f} s] == part {name}", flush=True)
        figures: dict = {}
        if missing:
            status, message = "skipped", f"needs part {', '.join(missing)}, which did not succeed"
        elif self.end - began <= 0:
            status, message = "skipped", "no time left of the run's total time limit"
        else:
            try:
                body(Deadline(self.scale.time_limits[name], self.end), figures)
                status, message = "ok", ""
            except PartTimedOut as problem:
                status, message = "timeout", str(problem)
            except PartFailed as problem:
                status, message = "failed", str(problem)
            except Exception as problem:  # one broken part does not stop the others
                status, message = "failed", f"unexpected {type(problem).__name__}: {problem}"
        entry = {"status": status, "message": message, **figures}
        entry["seconds"] = time.monotonic() - began
        entry["time_limit_seconds"] = self.scale.time_limits[name]
        entry["command_seconds"] = {command: seconds for command, seconds in self.workspace.commands.seconds.items()
                                    if command not in commands_before}
        self.result["parts"][name] = entry
        print(f"  part {name}: {entry['status']} in {entry['seconds']:.0f} s {entry['message']}", flush=True)
        self.save()

    def child(self, name: str, module: str, options: list, deadline: Deadline, figures: dict,
              env: dict[str, str] | None = None) -> None:
        """A measuring part in a process of its own (a hang is killed at the limit); its JSON."""
        out = self.workspace.root / f"{name}.json"
        self.workspace.commands.run(name, [sys.executable, "-m", module, "--json", out, *options], deadline, env)
        figures.update(json.loads(out.read_text()))

    def step(self, deadline: Deadline, figures: dict) -> None:
        s = self.scale
        self.child("step", "vox2vec_nnunet.perf.acceptance_step", [
            "--device", s.device, "--base_channels", s.base_channels, "--num_levels", s.num_levels,
            "--volumes", s.step_volumes, "--positions", s.num_positions, "--patch", *s.patch,
            "--repeats", s.step_repeats, "--matmul_size", s.matmul_size, "--matmul_repeats", s.matmul_repeats],
            deadline, figures)

    def loader(self, deadline: Deadline, figures: dict) -> None:
        """The trainer it builds writes its log to results of its own, not to the pre-training's."""
        s = self.scale
        results = self.workspace.root / "loader_results"
        results.mkdir(exist_ok=True)
        self.child("loader", "vox2vec_nnunet.perf.acceptance_loader", [
            "-d", pipeline.FPN_PRETRAIN_ID, "-tr", s.pretrain_trainer, "--device", s.device,
            "--workers", *s.loader_workers], deadline, figures, env={"nnUNet_results": str(results)})

    def run(self) -> dict:
        ws = self.workspace
        self.part("data", lambda deadline, figures: pipeline.make_data(ws, deadline, figures))
        self.part("step", self.step)
        self.part("loader", self.loader, needs=("data",))
        self.part("fpn", lambda deadline, figures: pipeline.fpn_arm(ws, deadline, figures), needs=("data",))
        self.part("unet", lambda deadline, figures: pipeline.unet_arm(ws, deadline, figures), needs=("data",))
        self.result["total_seconds"] = time.monotonic() - self.began
        self.result["claims"] = claims(self.result)
        self.save()
        return self.result


def _figure(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _verdict(result: dict, part: str, done: bool) -> tuple[bool | None, str]:
    """A claim that a part got through a stage: met when it did, not met when the part failed
    or timed out before it, not measured when the part did not run."""
    entry = result["parts"][part]
    if done:
        return True, ""
    return (None if entry["status"] == "skipped" else False), f"part {part} {entry['status']}: {entry['message']}"


def claims(result: dict) -> list[dict]:
    """The claims, each met (True), not met (False) or not measured (None), with its figure."""
    parts = result["parts"]
    step, loader, fpn, unet = (parts[name] for name in ("step", "loader", "fpn", "unet"))
    arms = step.get("arms", {})
    ours, reference = ({} if arms.get(arm, {}).get("status") != "ok" else arms[arm]
                       for arm in ("ours", "reference_style"))
    size = "the paper-scale" if result["scale"] == "gpu" else "the smoke-size"
    workers = max(result["settings"]["loader_workers"])
    out = []

    def claim(text: str, met: bool | None, figure: str) -> None:
        out.append({"claim": text, "met": met, "figure": figure})

    text = f"{size} step (ours) runs on the device"
    if ours:
        claim(text, True, f"{ours['ms_per_iteration']:.1f} ms per iteration, peak step memory "
                          f"{ours['peak_step_memory_bytes'] / GIB:.2f} GiB")
    elif "ours" in arms:
        claim(text, False, f"ours: {arms['ours']['status']} {arms['ours'].get('message', '')}")
    else:
        claim(text, *_verdict(result, "step", False))

    text = "bf16 step faster than the reference style"
    if ours and reference:
        claim(text, step["ratio_ours_to_reference"] < 1.0,
              f"ours {ours['ms_per_iteration']:.1f} ms, reference style {reference['ms_per_iteration']:.1f} ms, "
              f"ratio {step['ratio_ours_to_reference']:.3f}")
    else:
        claim(text, None, f"reference style: {arms['reference_style']['status']}" if "reference_style" in arms else
              f"part step {step['status']}")

    text = f"loader keeps up with the step at up to {workers} workers"
    if ours and "workers" in loader:
        steps_per_second = 1000.0 / ours["ms_per_iteration"]
        rates = {int(w): r["batches_per_second"] for w, r in loader["workers"].items()}
        keeping_up = [w for w, rate in sorted(rates.items()) if rate >= steps_per_second]
        shown = keeping_up[0] if keeping_up else max(rates)
        claim(text, bool(keeping_up), f"{shown} workers give {rates[shown]:.2f} batches/s for {steps_per_second:.2f} "
                                      f"steps/s")
    else:
        claim(text, None, f"part step {step['status']}, part loader {loader['status']}")

    pretrain = fpn.get("pretrain", {})
    met, why = _verdict(result, "fpn", "final_iteration" in pretrain)
    claim("torchrun pre-training killed part-way resumes with --c and finishes", met,
          f"killed at the checkpoint of iteration {pretrain['killed_at_iteration']}, finished "
          f"{pretrain['final_iteration']} iterations, {pretrain['iterations_per_second']:.2f} it/s" if met else why)
    for part, entry, text in ((fpn, "fpn", "the pre-trained FPN fine-tunes and predicts a clinical-size scan"),
                              (unet, "unet", "the ResEnc U-Net pre-trains, fine-tunes and predicts a clinical-size "
                                             "scan")):
        met, why = _verdict(result, entry, "predict" in part)
        claim(text, met, f"{part['predict']['seconds_per_scan']:.1f} s per scan of {part['predict']['scan_shape_zyx']} "
                         f"voxels, fine-tuning pseudo Dice {part['finetune']['pseudo_dice']:.3f}" if met else why)

    total, limit = result["total_seconds"], result["total_seconds_limit"]
    claim(f"the whole run finishes within {limit / 60:.0f} minutes", total <= limit, f"{total:.0f} s")
    return out


def _step_figures(step: dict) -> str:
    arms = "; ".join(
        f"{arm} {f['ms_per_iteration']:.1f} ms, {f['peak_step_memory_bytes'] / GIB:.2f} GiB, "
        f"{f['flops_per_iteration'] / 1e12:.3g} TFLOP, {f['achieved_tflops']:.3g} TFLOP/s"
        if f["status"] == "ok" else f"{arm} {f['status']}" for arm, f in step["arms"].items())
    return (f"{arms}; ratio {_figure(step.get('ratio_ours_to_reference'), '', 3)}; share of the bf16 peak "
            f"{_figure(step.get('share_of_peak'), '', 3)} of {step['peak_bf16_tflops']:.4g} TFLOP/s "
            f"({step['peak_source']}; measured matmul {step['measured_bf16_matmul_tflops']:.4g}) on "
            f"{step['device_name']}")


def _arm_figures(arm: dict) -> str:
    p, f, q = arm["pretrain"], arm["finetune"], arm["predict"]
    trained = (f"killed at iteration {p['killed_at_iteration']}, resumed to {p['final_iteration']}"
               if "killed_at_iteration" in p else f"{p['iterations']} iterations")
    return (f"pre-training {trained}, {p['iterations_per_second']:.2f} it/s; fine-tuning {f['seconds']:.0f} s, "
            f"pseudo Dice {f['pseudo_dice']:.3f}; predict {q['seconds_per_scan']:.1f} s per scan {q['scan_shape_zyx']}")


def table(result: dict) -> str:
    """The parts with their figures, one row each (a part that is not ok: its one-line reason)."""
    parts = result["parts"]
    data, loader = parts["data"], parts["loader"]
    figures = {
        "data": lambda: (f"{data['cases']} clinical phantoms {data['scan_shapes_zyx']}, {data['prepared_cases']} "
                         f"prepared; phantoms {data['phantoms_seconds']:.0f} s, preparation "
                         f"{data['prepare_seconds']:.0f} s"),
        "step": lambda: _step_figures(parts["step"]),
        "loader": lambda: (", ".join(f"{w} workers {r['batches_per_second']:.2f} b/s"
                                     for w, r in loader["workers"].items())
                           + f" (augmentation {loader['augmentation']}, {loader['cpu_count']} CPUs)"),
        "fpn": lambda: _arm_figures(parts["fpn"]),
        "unet": lambda: _arm_figures(parts["unet"]),
    }
    rows = [("part", "status", "seconds", "figures")]
    for name in PARTS:
        entry = parts[name]
        rows.append((name, entry["status"], f"{entry['seconds']:.0f}",
                     figures[name]() if entry["status"] == "ok" else entry["message"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(" | ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]) for r in rows)


def report(result: dict) -> None:
    device = result["parts"]["step"].get("device_name", "device not measured")
    print(f"\nGPU acceptance ({result['scale']}{'; ' + result['scaled_down'] if result['scaled_down'] else ''}), "
          f"{device}, {result['machine']['gpu_count']} GPUs, {result['machine']['cpu_count']} CPUs, torch "
          f"{result['machine']['torch']}")
    print(table(result))
    print("\nClaims:")
    for c in result["claims"]:
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[c["met"]]
        print(f"  [{verdict}] {c['claim']}: {c['figure']}")
    met = sum(c["met"] is True for c in result["claims"])
    others = [f"{c['claim']} ({'not met' if c['met'] is False else 'not measured'})"
              for c in result["claims"] if c["met"] is not True]
    print(f"\nSUMMARY: {met} of {len(result['claims'])} claims met"
          f"{'; ' + '; '.join(others) if others else ''}; total {result['total_seconds']:.0f} s; JSON: "
          f"{result['json']}")


def choose_scale(cpu_smoke: bool) -> tuple[Scale, str | None]:
    if cpu_smoke:
        return CPU_SMOKE, "scaled down to the CPU smoke size (--cpu_smoke): these are no GPU figures"
    if not torch.cuda.is_available():
        return CPU_SMOKE, "no CUDA device: scaled down to the CPU smoke size; these are no GPU figures"
    return GPU, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the JSON, logs and workspace")
    parser.add_argument("--cpu_smoke", action="store_true", help="the scaled-down CPU run (what the tests run)")
    parser.add_argument("--total_seconds", type=float, default=None,
                        help="time limit of the whole run (default: 480 on a GPU, 1200 for the CPU smoke)")
    args = parser.parse_args(argv)
    scale, scaled_down = choose_scale(args.cpu_smoke)
    if scaled_down:
        print(f"vox2vec GPU acceptance: {scaled_down}", flush=True)
    total = scale.total_seconds if args.total_seconds is None else args.total_seconds
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        run = Run(args.output, scale, scaled_down, total)
    except PartFailed as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print(f"vox2vec GPU acceptance in {args.output} ({scale.name}, device {scale.device}, time limit {total:.0f} s; "
          f"parts {', '.join(f'{p} {scale.time_limits[p]:.0f} s' for p in PARTS)})", flush=True)
    result = run.run()
    result["json"] = str(args.output / RESULT_FILE)
    report(result)
    return 0 if all(part["status"] == "ok" for part in result["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
