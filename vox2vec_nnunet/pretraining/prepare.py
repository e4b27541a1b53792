"""Build the pre-training dataset from unlabeled images (paper Sect. 3.1, 4.1).

Images come from nnU-Net raw datasets (``imagesTr`` and ``imagesTs``; labels are neither
needed nor used) and from plain folders of image files. Each image is preprocessed with
nnU-Net's own ``DefaultPreprocessor`` under a :class:`PreprocessingPlans` (intensities kept in
HU), cropped to the bounding box of voxels above -500 HU (Sect. 4.1), and saved with nnU-Net's
dataset class; the case's body mask (docs/method.md, "Body mask") is stored as its segmentation, so
nnU-Net's loaders deliver it beside the image. Two kinds of plans:

* for the vox2vec FPN, the ``3d_vox2vec_pretrain`` configuration (1x1x2 mm, each scan's slice
  axis first: :func:`fpn_preprocessing`);
* for nnU-Net's own U-Net of a labeled dataset's plans configuration (e.g.
  ``nnUNetResEncUNetMPlans`` ``3d_fullres``), that configuration's spacing, patch size,
  transposition and network, with ``NoNormalization`` instead of its ``CTNormalization``, whose
  numbers stay in the plans for the augmentation (:func:`target_preprocessing`). The
  pre-training dataset gets these plans, so ``Vox2VecPretrainTrainer_UNet`` builds the same
  network as ``nnUNetv2_train`` on the labeled dataset.

Scans smaller than a patch after cropping are kept: pre-training pads their patches with air
(:mod:`vox2vec_nnunet.pretraining.sampling`). Robust to bad input: a scan that cannot be read,
holds NaN/inf, or whose body has fewer voxels than the m distinct positions a pair samples
(``num_positions``, the paper's 1,000 by default) is reported and skipped, with the reason;
the rest is kept. Every case is
written to temporary names and moved in place properties-file last, so a case is finished
exactly when its ``.pkl`` exists, and a second run resumes by skipping finished cases.
"""
from __future__ import annotations

import copy
import json
import multiprocessing
import os
import resource
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
from tqdm import tqdm

from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet_plans.builder import (PRETRAINING_CONFIGURATION, ConfigurationSettings, build_plans,
                                          load_template, slice_axis_first)

if TYPE_CHECKING:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

REPORT_FILE = "vox2vec_preparation_report.json"
DEFAULT_NUM_POSITIONS = 1000
"""m of the paper (sec. 3.1): positions per volume and iteration; a scan needs that many body voxels."""
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".gipl")
TMP_PREFIX = ".partial_"
TARGET_NORMALIZATION_KEY = "vox2vec_target_normalization_schemes"
"""Configuration key of a pre-training plans made from a target plans: the target's normalisation
(the pre-training data keeps HU; the augmentation ends where this normalisation would)."""


@dataclass(frozen=True)
class PreprocessingPlans:
    """The plans pre-training cases are preprocessed with: one configuration that keeps HU.

    ``settings`` is set for the vox2vec FPN plans, which put each scan's slice axis first
    (:func:`slice_axis_first`); ``None`` for a target plans, whose ``transpose_forward`` holds
    for every scan, as nnU-Net applies it to the labeled dataset.
    """

    plans: dict
    configuration: str
    settings: ConfigurationSettings | None = None

    @property
    def entry(self) -> dict:
        return self.plans["configurations"][self.configuration]

    @property
    def patch_size(self) -> list[int]:
        return [int(p) for p in self.entry["patch_size"]]

    @property
    def spacing(self) -> list[float]:
        return [float(s) for s in self.entry["spacing"]]

    @property
    def data_identifier(self) -> str:
        return self.entry["data_identifier"]

    def for_case(self, reader_name: str, spacing) -> "PlansManager":
        """nnU-Net's plans manager for one scan read by ``reader_name`` with ``spacing``."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans = dict(self.plans, image_reader_writer=reader_name)
        if self.settings is not None:
            forward = slice_axis_first(spacing)
            plans.update(transpose_forward=forward, transpose_backward=[int(i) for i in np.argsort(forward)])
        return PlansManager(plans)

    def dataset_plans(self, dataset_name: str, median_shape) -> dict:
        """The plans file of the prepared dataset (cases stored as prepared)."""
        if self.settings is not None:
            return build_plans(dataset_name, self.plans["plans_name"], {self.configuration: self.settings},
                               "SimpleITKIO", [0, 1, 2], 1, self.settings.spacing, median_shape)
        plans = copy.deepcopy(self.plans)
        plans["dataset_name"] = dataset_name
        plans["configurations"][self.configuration]["median_image_size_in_voxels"] = [float(s) for s in median_shape]
        return plans

    def describe(self) -> dict:
        """What the preparation report records about the plans."""
        if self.settings is not None:
            return asdict(self.settings)
        return {"plans": self.plans["plans_name"], "configuration": self.configuration, "spacing": self.spacing,
                "patch_size": self.patch_size, "target_normalization": self.entry[TARGET_NORMALIZATION_KEY]}


def fpn_preprocessing(settings: ConfigurationSettings, plans_name: str) -> PreprocessingPlans:
    """The vox2vec FPN's pre-training configuration ``3d_vox2vec_pretrain`` with ``settings``."""
    plans = build_plans("pretraining", plans_name, {PRETRAINING_CONFIGURATION: settings}, "SimpleITKIO", [0, 1, 2],
                        1, [1.0, 1.0, 1.0], [1, 1, 1])
    return PreprocessingPlans(plans, PRETRAINING_CONFIGURATION, settings)


def target_preprocessing(target_plans: dict, configuration: str, source: str) -> PreprocessingPlans:
    """Pre-training plans for the network of ``configuration`` of an nnU-Net plans (``source`` names
    the plans file in errors).

    The configuration (inheritance resolved) keeps spacing, patch size, network and the plans'
    transposition and intensity properties; its normalisation becomes ``NoNormalization`` (the
    target's is recorded under :data:`TARGET_NORMALIZATION_KEY`) and the data are resampled as
    the FPN's pre-training data (linear, float32, no crop mask: ``resampling_overrides``).
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    available = sorted(target_plans.get("configurations", {}))
    if configuration not in available:
        raise Vox2VecError(f"{source}: no configuration {configuration!r} (it has {available})")
    entry = copy.deepcopy(PlansManager(copy.deepcopy(target_plans)).get_configuration(configuration).configuration)
    schemes = entry["normalization_schemes"]
    if schemes != ["CTNormalization"]:
        raise Vox2VecError(f"{source}: configuration {configuration!r} normalises its channels with {schemes}; vox2vec "
                           f"pre-trains on single-channel CT (CTNormalization), whose HU the augmentation windows")
    if "architecture" not in entry or "network_class_name" not in entry["architecture"]:
        raise Vox2VecError(f"{source}: configuration {configuration!r} names no network architecture")
    entry.pop("inherits_from", None)
    resampling = {k: v for k, v in load_template()["resampling_overrides"][PRETRAINING_CONFIGURATION].items()
                  if k != "description"}
    entry.update(normalization_schemes=["NoNormalization"], use_mask_for_norm=[False],
                 data_identifier=f"{target_plans['plans_name']}_{configuration}", **resampling)
    entry[TARGET_NORMALIZATION_KEY] = schemes
    plans = copy.deepcopy(target_plans)
    plans["configurations"] = {configuration: entry}
    return PreprocessingPlans(plans, configuration)


@dataclass(frozen=True)
class CaseTask:
    """One image to prepare."""

    identifier: str
    image_file: str
    source: str


@dataclass(frozen=True)
class CaseResult:
    identifier: str
    image_file: str
    status: str  # "done", "skipped" or "already done"
    reason: str = ""
    shape: tuple[int, ...] = ()
    worker: int = 0  # process id of the worker that prepared it
    peak_rss_mib: float = 0.0  # that worker's peak resident memory after this case (ru_maxrss)


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def tasks_from_raw_dataset(raw_folder: Path) -> list[CaseTask]:
    """The CT images of an nnU-Net raw dataset (``imagesTr`` and ``imagesTs``)."""
    dataset_json_file = raw_folder / "dataset.json"
    if not dataset_json_file.is_file():
        raise Vox2VecError(f"{dataset_json_file} does not exist: {raw_folder} is not an nnU-Net raw dataset")
    dataset_json = json.loads(dataset_json_file.read_text())
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    ct = [int(k) for k, v in channels.items() if str(v).lower() == "ct"]
    if not ct:
        raise Vox2VecError(f"{dataset_json_file}: no channel named 'CT' (channels: {channels}); vox2vec pre-trains "
                           f"on CT in HU only")
    ending = dataset_json["file_ending"]
    channel_suffix = f"_{ct[0]:04d}{ending}"
    tasks = []
    for sub in ("imagesTr", "imagesTs"):
        for f in sorted((raw_folder / sub).glob(f"*{channel_suffix}")):
            case = f.name[: -len(channel_suffix)]
            tasks.append(CaseTask(f"{raw_folder.name[:10]}_{case}", str(f), f"{raw_folder.name}/{sub}"))
    return tasks


def tasks_from_folder(folder: Path) -> list[CaseTask]:
    """Every image file of a plain folder (one single-channel CT per file)."""
    if not folder.is_dir():
        raise Vox2VecError(f"{folder}: no such folder")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(IMAGE_SUFFIXES))
    tag = "".join(c if c.isalnum() else "_" for c in folder.resolve().name)
    return [CaseTask(f"{tag}_{file_stem(f)}", str(f), str(folder)) for f in files]


def reader_for(image_file: str):
    """nnU-Net's reader/writer class for ``image_file``: the first reader made for its ending that
    opens it, else the first reader of any kind that opens it.

    Readers made for the ending come first because nnU-Net tries its natural-image (2-D) reader
    first among all readers, and it opens a 3-D ``.mha`` of up to 4 slices as a 2-D image with
    one channel per slice.
    """
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

    ending = next((s for s in IMAGE_SUFFIXES if image_file.endswith(s)), Path(image_file).suffix)
    try:
        return determine_reader_writer_from_file_ending(ending, image_file, verbose=False)
    except RuntimeError:
        return determine_reader_writer_from_file_ending(ending, image_file, allow_nonmatching_filename=True,
                                                        verbose=False)


def prepare_case(task: CaseTask, output_folder: str, preprocessing: PreprocessingPlans,
                 num_positions: int = DEFAULT_NUM_POSITIONS) -> CaseResult:
    """Read, preprocess with nnU-Net, crop, mask and save one case; never raises for bad data.

    A case is skipped when its body has fewer than ``num_positions`` voxels (it cannot give
    the m distinct positions of a pair).
    """
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    from vox2vec_nnunet.pretraining.body_mask import body_bounding_box, body_mask

    def skipped(reason: str) -> CaseResult:
        return CaseResult(task.identifier, task.image_file, "skipped", reason)

    try:
        reader = reader_for(task.image_file)
        image, properties = reader().read_images((task.image_file,))
    except Exception as e:  # any reader failure means an unreadable scan
        return skipped(f"cannot be read: {type(e).__name__}: {e}")
    if not np.isfinite(image).all():
        return skipped("holds NaN or infinite values")
    plans = preprocessing.for_case(reader.__name__, properties["spacing"])
    handed_over = [image]  # nnU-Net copies the image first; holding no reference here frees the
    del image              # original at once instead of through the resampling (0.8 GiB at 512x512x800)
    try:
        data, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
            handed_over.pop(), None, properties, plans, plans.get_configuration(preprocessing.configuration),
            {"labels": {"background": 0}, "channel_names": {"0": "CT"}})
    except Exception as e:
        return skipped(f"nnU-Net preprocessing failed: {type(e).__name__}: {e}")
    hu = data[0]
    try:
        box = body_bounding_box(hu)
    except ValueError:
        return skipped("has no voxel above -500 HU (no body)")
    hu = np.ascontiguousarray(hu[box])
    body = body_mask(hu)
    body_voxels = int(np.count_nonzero(body))
    if body_voxels < num_positions:
        return skipped(f"its body has {body_voxels} voxels (after cropping to {hu.shape} voxels at "
                       f"{tuple(preprocessing.spacing)} mm), fewer than the m = {num_positions} distinct positions a "
                       f"pre-training pair samples (--num_positions)")
    properties.update(vox2vec_source=task.image_file, vox2vec_crop=[[s.start, s.stop] for s in box],
                      vox2vec_body_voxels=body_voxels)
    blocks, chunks = comp_blosc2_params((1, *hu.shape), preprocessing.patch_size, bytes_per_pixel=4)
    output = Path(output_folder)
    partial = output / f"{TMP_PREFIX}{task.identifier}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    nnUNetDatasetBlosc2.save_case(hu[None].astype(np.float32), body[None].astype(np.int8), properties,
                                  str(partial / task.identifier), chunks=chunks, blocks=blocks)
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):  # properties last: the "finished" marker
        os.replace(partial / f"{task.identifier}{suffix}", output / f"{task.identifier}{suffix}")
    partial.rmdir()
    return CaseResult(task.identifier, task.image_file, "done", shape=tuple(int(s) for s in hu.shape))


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (``getrusage`` ``ru_maxrss``: all
    memory the process held, including SimpleITK's, blosc2's and cc3d's buffers that Python's
    allocator and tracemalloc do not see)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepare_case_measured(args: tuple) -> CaseResult:
    """:func:`prepare_case` and the worker's peak memory after it."""
    return replace(prepare_case(*args), worker=os.getpid(), peak_rss_mib=peak_rss_mib())


def unique_tasks(tasks: Iterable[CaseTask]) -> list[CaseTask]:
    """Tasks with identifiers made unique (same file names in two sources)."""
    seen: dict[str, int] = {}
    result = []
    for t in tasks:
        n = seen.get(t.identifier, 0)
        seen[t.identifier] = n + 1
        result.append(t if n == 0 else CaseTask(f"{t.identifier}_{n}", t.image_file, t.source))
    return result


def prepare_pretraining_dataset(tasks: list[CaseTask], preprocessed_folder: Path, preprocessing: PreprocessingPlans,
                                num_processes: int = 1,
                                num_positions: int = DEFAULT_NUM_POSITIONS) -> list[CaseResult]:
    """Prepare every task into ``preprocessed_folder/<data identifier>`` (e.g.
    ``Vox2VecPlans_3d_vox2vec_pretrain``); resumable.

    Cases whose body has fewer than ``num_positions`` voxels are skipped.
    """
    data_folder = preprocessed_folder / preprocessing.data_identifier
    data_folder.mkdir(parents=True, exist_ok=True)
    for leftover in data_folder.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(leftover)
    for orphan in data_folder.glob("*.b2nd"):  # data of a case whose properties never landed
        identifier = orphan.name.removesuffix("_seg.b2nd").removesuffix(".b2nd")
        if not (data_folder / f"{identifier}.pkl").exists():
            orphan.unlink()
    finished = {p.stem for p in data_folder.glob("*.pkl")}
    todo = [t for t in tasks if t.identifier not in finished]
    results = [CaseResult(t.identifier, t.image_file, "already done") for t in tasks if t.identifier in finished]
    if finished:
        print(f"Resuming: {len(results)} of {len(tasks)} cases are already prepared")
    args = [(t, str(data_folder), preprocessing, num_positions) for t in todo]
    progress = dict(total=len(todo), desc="Preparing pre-training cases", unit="case")
    if num_processes <= 1:
        results += [_prepare_case_measured(a) for a in tqdm(args, **progress)]
    else:
        with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
            results += list(tqdm(pool.imap_unordered(_prepare_case_measured, args), **progress))
    return results


def write_dataset_files(raw_folder: Path, preprocessed_folder: Path, preprocessing: PreprocessingPlans,
                        results: list[CaseResult], num_positions: int = DEFAULT_NUM_POSITIONS) -> None:
    """The raw ``dataset.json``, and the plans, ``dataset.json`` and fingerprint nnUNetv2_train reads."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    data_folder = preprocessed_folder / preprocessing.data_identifier
    identifiers = sorted(nnUNetDatasetBlosc2.get_identifiers(str(data_folder)))
    if not identifiers:
        raise Vox2VecError(f"no usable case was prepared into {data_folder}; see the skipped cases above")
    dataset = nnUNetDatasetBlosc2(str(data_folder), identifiers)
    shapes = np.array([dataset.load_case(i)[0].shape[1:] for i in identifiers])
    median_shape = np.median(shapes, 0)
    dataset_json = {
        "name": raw_folder.name, "channel_names": {"0": "CT"}, "labels": {"background": 0, "body": 1},
        "numTraining": len(identifiers), "file_ending": ".nii.gz",
        "description": "vox2vec pre-training set: unlabeled CT, preprocessed and body-masked by "
                       "vox2vec_nnunet_prepare_pretraining (the label is the body mask).",
    }
    raw_folder.mkdir(parents=True, exist_ok=True)
    (raw_folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    (preprocessed_folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    plans = preprocessing.dataset_plans(raw_folder.name, median_shape)
    (preprocessed_folder / f"{plans['plans_name']}.json").write_text(json.dumps(plans, indent=2))
    fingerprint = {"spacings": [preprocessing.spacing] * len(identifiers),
                   "shapes_after_crop": shapes.tolist(),
                   "foreground_intensity_properties_per_channel": plans["foreground_intensity_properties_per_channel"],
                   "median_relative_size_after_cropping": 1.0}
    (preprocessed_folder / "dataset_fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
    report = {"settings": preprocessing.describe(), "num_positions": num_positions,
              "cases": [asdict(r) for r in results]}
    (preprocessed_folder / REPORT_FILE).write_text(json.dumps(report, indent=2))


def run_summary(results: list[CaseResult], seconds: float, num_processes: int) -> list[str]:
    """Lines about a preparation run: cases per minute, and the peak memory of every worker
    process (its maximum resident set size, :func:`peak_rss_mib`; it includes the about
    0.3 GiB of the loaded libraries, and it is the figure a memory limit of the machine or
    the job scheduler sees)."""
    worked = [r for r in results if r.status in ("done", "skipped")]
    done = sum(r.status == "done" for r in worked)
    lines = [f"Throughput: {done} cases prepared ({len(worked) - done} skipped) in {seconds / 60:.1f} min with "
             f"{num_processes} worker process{'es' if num_processes > 1 else ''}: {60 * done / max(seconds, 1e-9):.2f} "
             f"cases/min"]
    peaks: dict[int, CaseResult] = {}
    for r in worked:
        if r.worker not in peaks or r.peak_rss_mib > peaks[r.worker].peak_rss_mib:
            peaks[r.worker] = r
    if peaks:
        lines.append("Peak memory per worker (maximum resident set size of the process, getrusage):")
        for r in sorted(peaks.values(), key=lambda r: -r.peak_rss_mib):
            cases = sum(w.worker == r.worker for w in worked)
            lines.append(f"  worker {r.worker}: {r.peak_rss_mib / 1024:.2f} GiB over {cases} case(s), reached by "
                         f"{r.identifier} ({r.image_file})")
    return lines
