"""Build the pre-training dataset from unlabeled images (paper Sect. 3.1, 4.1).

Images come from nnU-Net raw datasets (``imagesTr`` and ``imagesTs``, every channel of a case;
labels are neither needed nor used) and from plain folders of image files (one single-channel
image per file, of the channel ``folder_channel`` names, CT by default). Each image is
preprocessed with nnU-Net's own ``DefaultPreprocessor`` under a :class:`PreprocessingPlans`,
cropped to the body's bounding box, and saved with nnU-Net's dataset class; the case's body
mask (docs/method.md, "Body mask") is stored as its segmentation, so nnU-Net's loaders deliver it beside
the image. Two kinds of plans:

* for the vox2vec FPN, the ``3d_vox2vec_pretrain`` configuration (1x1x2 mm, each scan's slice
  axis first: :func:`fpn_preprocessing`);
* for nnU-Net's own U-Net of a labeled dataset's plans configuration (e.g.
  ``nnUNetResEncUNetMPlans`` ``3d_fullres``), that configuration's spacing, patch size,
  transposition and network, with ``NoNormalization`` instead of its ``CTNormalization``, whose
  numbers stay in the plans for the augmentation (:func:`target_preprocessing`). The
  pre-training dataset gets these plans, so ``Vox2VecPretrainTrainer_UNet`` builds the same
  network as ``nnUNetv2_train`` on the labeled dataset.

Channels (:mod:`vox2vec_nnunet.channels`). A CT channel is kept in HU: the paper's crop to the
voxels above -500 HU and its body mask (Sect. 3.1, 4.1), and the random HU window of the
augmentation, apply. Every other channel is stored z-scored by nnU-Net's own
``ZScoreNormalization`` at preprocessing, exactly as the fine-tuning plans normalise it
(``use_mask_for_norm``: the target plans' for nnU-Net's U-Net; for the FPN decided per scan by
nnU-Net's planner rule, inside the nonzero mask when cropping to it shrinks the scan below 3/4);
channels nnU-Net would not z-score (``noNorm``, ``rescale_to_0_1``, ``rgb_to_0_1``) are refused.
The channels of a scan share every spatial decision: one crop, one body mask, taken from the
first CT channel if there is one (the paper's rule in HU), else from channel 0 with the
unit-free rule of :func:`vox2vec_nnunet.pretraining.body_mask.unitless_air`; the patches of a
pair hold all channels at the same place. A scan z-scored inside its nonzero mask (nnU-Net's
sign that its zeros surround the subject, as in skull-stripped brains) has that mask as its body
instead: with no air left in the data, the unit-free threshold would cut into dark tissue
(cerebrospinal fluid) at the border.

One pre-training dataset holds one channel set (:func:`pretraining_channels`): every source
must have the same channels (names compared case-insensitively, in order), which the dataset
keeps; single-channel sources that are not CT may differ in name (T1, T2, FLAIR, ... z-scored
alike: the dataset's channel is named by them all, e.g. ``T1+T2``). CT and other modalities are
never mixed, neither within one channel nor as different channel sets: a CT channel is HU with a
window augmentation, a z-scored channel has no unit, and one network input cannot be both.
Prepare one pre-training dataset per channel set instead.

Scans smaller than a patch after cropping are kept: pre-training pads their patches with air
(:mod:`vox2vec_nnunet.pretraining.sampling`). Robust to bad input: a scan that cannot be read,
whose channels disagree in shape or spacing, holds NaN/inf, has a channel named CT that is
clearly not in HU (:func:`vox2vec_nnunet.channels.hounsfield_problem`), or whose body has fewer
voxels than the m distinct positions a pair samples (``num_positions``, the paper's 1,000 by
default) is reported and skipped, with the reason; the rest is kept. Every case is
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
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from vox2vec_nnunet.channels import (CT_NORMALIZATION, HU_KEPT, ZSCORE_NORMALIZATION, channel_names,
                                     hounsfield_problem, is_ct, nnunet_normalization)
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
(CT data keeps HU; the augmentation ends where this normalisation would)."""
NONZERO_CROP_FRACTION = 0.75
"""nnU-Net's planner z-scores inside the nonzero mask when cropping to it leaves less than this
fraction of the (median) image; the FPN's pre-training applies the rule to each scan."""


@dataclass(frozen=True)
class PreprocessingPlans:
    """The plans pre-training cases are preprocessed with: one configuration that keeps CT in HU
    and z-scores the other channels.

    ``settings`` is set for the vox2vec FPN plans, which put each scan's slice axis first
    (:func:`slice_axis_first`) and decide ``use_mask_for_norm`` per scan; ``None`` for a target
    plans, whose ``transpose_forward`` and ``use_mask_for_norm`` hold for every scan, as nnU-Net
    applies them to the labeled dataset. ``channel_names`` in channel order.
    """

    plans: dict
    configuration: str
    channel_names: tuple[str, ...]
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

    @property
    def dataset_json(self) -> dict:
        """What nnU-Net's preprocessor reads of a dataset.json (the labels of the stored mask)."""
        return {"labels": {"background": 0, "body": 1},
                "channel_names": {str(c): n for c, n in enumerate(self.channel_names)}}

    def for_case(self, reader_name: str, spacing, image: np.ndarray) -> "PlansManager":
        """nnU-Net's plans manager for one scan ``image`` (C, ...) read by ``reader_name`` with ``spacing``."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans = dict(self.plans, image_reader_writer=reader_name)
        if self.settings is not None:
            forward = slice_axis_first(spacing)
            plans.update(transpose_forward=forward, transpose_backward=[int(i) for i in np.argsort(forward)])
            schemes = self.entry["normalization_schemes"]
            if ZSCORE_NORMALIZATION in schemes:
                masked = nonzero_crop_fraction(image) < NONZERO_CROP_FRACTION
                entry = dict(self.entry, use_mask_for_norm=[masked and s == ZSCORE_NORMALIZATION for s in schemes])
                plans["configurations"] = {self.configuration: entry}
        return PlansManager(plans)

    def dataset_plans(self, dataset_name: str, median_shape) -> dict:
        """The plans file of the prepared dataset (cases stored as prepared)."""
        if self.settings is not None:
            return build_plans(dataset_name, self.plans["plans_name"], {self.configuration: self.settings},
                               "SimpleITKIO", [0, 1, 2], self.channel_names, self.settings.spacing, median_shape)
        plans = copy.deepcopy(self.plans)
        plans["dataset_name"] = dataset_name
        plans["configurations"][self.configuration]["median_image_size_in_voxels"] = [float(s) for s in median_shape]
        return plans

    def describe(self) -> dict:
        """What the preparation report records about the plans."""
        channels = {"channel_names": list(self.channel_names),
                    "normalization_schemes": self.entry["normalization_schemes"]}
        if self.settings is not None:
            return {**asdict(self.settings), **channels}
        return {"plans": self.plans["plans_name"], "configuration": self.configuration, "spacing": self.spacing,
                "patch_size": self.patch_size, "target_normalization": self.entry[TARGET_NORMALIZATION_KEY],
                **channels}


def nonzero_crop_fraction(image: np.ndarray) -> float:
    """The fraction of a scan ``(C, ...)`` that nnU-Net's crop to the nonzero region keeps (its
    fingerprint's ``relative_size_after_cropping``), with nnU-Net's own nonzero mask."""
    from acvl_utils.cropping_and_padding.bounding_boxes import get_bbox_from_mask
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask

    mask = create_nonzero_mask(image)
    if not mask.any():
        return 0.0
    return float(np.prod([b - a for a, b in get_bbox_from_mask(mask)]) / mask.size)


def fpn_preprocessing(settings: ConfigurationSettings, plans_name: str,
                      channels: Sequence[str]) -> PreprocessingPlans:
    """The vox2vec FPN's pre-training configuration ``3d_vox2vec_pretrain`` with ``settings``, for
    ``channels`` (names in channel order: CT kept in HU, the others z-scored)."""
    plans = build_plans("pretraining", plans_name, {PRETRAINING_CONFIGURATION: settings}, "SimpleITKIO", [0, 1, 2],
                        channels, [1.0, 1.0, 1.0], [1, 1, 1])
    return PreprocessingPlans(plans, PRETRAINING_CONFIGURATION, tuple(channels), settings)


def target_preprocessing(target_plans: dict, configuration: str, source: str,
                         channels: Sequence[str]) -> PreprocessingPlans:
    """Pre-training plans for the network of ``configuration`` of an nnU-Net plans (``source`` names
    the plans file in errors), for images of ``channels``.

    The configuration (inheritance resolved) keeps spacing, patch size, network and the plans'
    transposition and intensity properties; a CT channel's ``CTNormalization`` becomes
    ``NoNormalization`` (the target's schemes are recorded under :data:`TARGET_NORMALIZATION_KEY`),
    a ``ZScoreNormalization`` stays (with the plans' ``use_mask_for_norm``), and the data are
    resampled as the FPN's pre-training data (linear, float32, no crop mask:
    ``resampling_overrides``). The channels must be those the plans normalise: CT where it has
    ``CTNormalization``, another channel where it z-scores.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    available = sorted(target_plans.get("configurations", {}))
    if configuration not in available:
        raise Vox2VecError(f"{source}: no configuration {configuration!r} (it has {available})")
    entry = copy.deepcopy(PlansManager(copy.deepcopy(target_plans)).get_configuration(configuration).configuration)
    schemes = list(entry["normalization_schemes"])
    stored = {CT_NORMALIZATION: HU_KEPT, ZSCORE_NORMALIZATION: ZSCORE_NORMALIZATION}
    if any(s not in stored for s in schemes):
        raise Vox2VecError(f"{source}: configuration {configuration!r} normalises its channels with {schemes}; vox2vec "
                           f"pre-trains on CT ({CT_NORMALIZATION}, whose HU the augmentation windows) and z-scored "
                           f"channels ({ZSCORE_NORMALIZATION})")
    if len(schemes) != len(channels) or any((s == CT_NORMALIZATION) != is_ct(n) for s, n in zip(schemes, channels)):
        raise Vox2VecError(f"{source}: configuration {configuration!r} normalises {len(schemes)} channel(s) with "
                           f"{schemes}, but the images to prepare have the channels {list(channels)}; pre-train on "
                           f"images of the labeled dataset's channels")
    if "architecture" not in entry or "network_class_name" not in entry["architecture"]:
        raise Vox2VecError(f"{source}: configuration {configuration!r} names no network architecture")
    entry.pop("inherits_from", None)
    resampling = {k: v for k, v in load_template()["resampling_overrides"][PRETRAINING_CONFIGURATION].items()
                  if k != "description"}
    entry.update(normalization_schemes=[stored[s] for s in schemes],
                 use_mask_for_norm=[bool(u) and s == ZSCORE_NORMALIZATION
                                    for u, s in zip(entry["use_mask_for_norm"], schemes)],
                 data_identifier=f"{target_plans['plans_name']}_{configuration}", **resampling)
    entry[TARGET_NORMALIZATION_KEY] = schemes
    plans = copy.deepcopy(target_plans)
    plans["configurations"] = {configuration: entry}
    return PreprocessingPlans(plans, configuration, tuple(channels))


@dataclass(frozen=True)
class CaseTask:
    """One scan to prepare: its image files, one per channel, and its source's channel names."""

    identifier: str
    image_files: tuple[str, ...]
    source: str
    channel_names: tuple[str, ...]

    @property
    def image_file(self) -> str:
        """The file that names the scan in reports (its first channel's)."""
        return self.image_files[0]


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
    """The scans of an nnU-Net raw dataset (``imagesTr`` and ``imagesTs``), every channel of each."""
    dataset_json_file = raw_folder / "dataset.json"
    if not dataset_json_file.is_file():
        raise Vox2VecError(f"{dataset_json_file} does not exist: {raw_folder} is not an nnU-Net raw dataset")
    dataset_json = json.loads(dataset_json_file.read_text())
    try:
        names = tuple(channel_names(dataset_json, dataset_json_file).values())
    except ValueError as error:
        raise Vox2VecError(str(error)) from None
    ending = dataset_json["file_ending"]
    first_channel = f"_0000{ending}"
    tasks = []
    for sub in ("imagesTr", "imagesTs"):
        for f in sorted((raw_folder / sub).glob(f"*{first_channel}")):
            case = f.name[: -len(first_channel)]
            files = tuple(str(raw_folder / sub / f"{case}_{c:04d}{ending}") for c in range(len(names)))
            tasks.append(CaseTask(f"{raw_folder.name[:10]}_{case}", files, f"{raw_folder.name}/{sub}", names))
    return tasks


def tasks_from_folder(folder: Path, channel: str = "CT") -> list[CaseTask]:
    """Every image file of a plain folder (one single-channel image per file, of ``channel``)."""
    if not folder.is_dir():
        raise Vox2VecError(f"{folder}: no such folder")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(IMAGE_SUFFIXES))
    tag = "".join(c if c.isalnum() else "_" for c in folder.resolve().name)
    return [CaseTask(f"{tag}_{file_stem(f)}", (str(f),), str(folder), (channel,)) for f in files]


def pretraining_channels(tasks: Sequence[CaseTask]) -> tuple[str, ...]:
    """The channel names of the pre-training dataset made of ``tasks`` (module docstring).

    Raises :class:`Vox2VecError` for a channel that is neither CT nor z-scored by nnU-Net, and
    for sources with different channels (unless all are single non-CT channels, which pool).
    """
    sources: dict[tuple[str, ...], list[str]] = {}
    for task in tasks:
        key = tuple(n.casefold() for n in task.channel_names)
        if key not in sources:
            sources[key] = [task.source]
            for c, name in enumerate(task.channel_names):
                if not is_ct(name) and nnunet_normalization(name) != ZSCORE_NORMALIZATION:
                    raise Vox2VecError(
                        f"{task.source}: channel {c} is named {name!r}, which nnU-Net normalises with "
                        f"{nnunet_normalization(name)}; vox2vec pre-trains on CT (in HU) and on channels nnU-Net "
                        f"z-scores (any other name, e.g. T1, T2, ADC)")
        elif task.source not in sources[key]:
            sources[key].append(task.source)
    names: dict[tuple[str, ...], tuple[str, ...]] = {}
    for task in tasks:
        names.setdefault(tuple(n.casefold() for n in task.channel_names), task.channel_names)
    if len(sources) <= 1:
        return next(iter(names.values()), ())
    if all(len(key) == 1 and not is_ct(key[0]) for key in sources):
        return ("+".join(sorted({n[0] for n in names.values()})),)
    described = "; ".join(f"{list(names[key])} from {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}"
                          for key, found in sources.items())
    raise Vox2VecError(
        f"the sources hold different channels ({described}). A pre-training dataset holds one channel set: CT (kept "
        f"in HU, windowed by the augmentation) and other modalities (z-scored) are not mixed, nor are scans of other "
        f"channels; only single-channel non-CT sources (T1, T2, ...) pool into one channel. Prepare one pre-training "
        f"dataset per channel set (another -o).")


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


def read_scan(task: CaseTask) -> tuple[np.ndarray, dict, type] | str:
    """A scan's channels ``(C, ...)`` read with nnU-Net's reader (one file per channel), its
    properties (the first channel's) and the reader class; or why it cannot be used."""
    images, spacings = [], []
    for file in task.image_files:
        if not Path(file).is_file():
            return f"channel file {file} does not exist"
        try:
            reader = reader_for(file)
            image, properties = reader().read_images((file,))
        except Exception as e:  # any reader failure means an unreadable scan
            return f"cannot be read: {file}: {type(e).__name__}: {e}"
        images.append(image)
        spacings.append([float(v) for v in properties["spacing"]])
        if len(images) == 1:
            first_properties, first_reader = properties, reader
    if len({i.shape for i in images}) > 1:
        return "its channels disagree in shape: " + ", ".join(
            f"{Path(f).name} {tuple(i.shape[1:])}" for f, i in zip(task.image_files, images))
    if not all(np.allclose(s, spacings[0], rtol=1e-3) for s in spacings):
        return "its channels disagree in spacing: " + ", ".join(
            f"{Path(f).name} {s}" for f, s in zip(task.image_files, spacings))
    image = images[0] if len(images) == 1 else np.concatenate(images)
    return image, first_properties, first_reader


def prepare_case(task: CaseTask, output_folder: str, preprocessing: PreprocessingPlans,
                 num_positions: int = DEFAULT_NUM_POSITIONS) -> CaseResult:
    """Read, preprocess with nnU-Net, crop, mask and save one case; never raises for bad data.

    A case is skipped when its body has fewer than ``num_positions`` voxels (it cannot give
    the m distinct positions of a pair).
    """
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    from vox2vec_nnunet.pretraining.body_mask import (air_bounding_box, body_bounding_box, body_from_air, body_mask,
                                                      scan_air)

    def skipped(reason: str) -> CaseResult:
        return CaseResult(task.identifier, task.image_file, "skipped", reason)

    if len(task.image_files) != len(preprocessing.channel_names):
        return skipped(f"it has {len(task.image_files)} channel(s), the pre-training dataset "
                       f"{len(preprocessing.channel_names)} ({list(preprocessing.channel_names)})")
    scan = read_scan(task)
    if isinstance(scan, str):
        return skipped(scan)
    image, properties, reader = scan
    del scan
    if not np.isfinite(image).all():
        return skipped("holds NaN or infinite values")
    ct = [c for c, name in enumerate(preprocessing.channel_names) if is_ct(name)]
    for c in ct:
        problem = hounsfield_problem(image[c])
        if problem is not None:
            return skipped(f"channel {c} ({task.image_files[c]}): {problem}")
    plans = preprocessing.for_case(reader.__name__, properties["spacing"], image)
    handed_over = [image]  # nnU-Net copies the image first; holding no reference here frees the
    del image              # original at once instead of through the resampling (0.8 GiB at 512x512x800)
    try:
        data, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
            handed_over.pop(), None, properties, plans, plans.get_configuration(preprocessing.configuration),
            preprocessing.dataset_json)
    except Exception as e:
        return skipped(f"nnU-Net preprocessing failed: {type(e).__name__}: {e}")
    reference = ct[0] if ct else 0  # one crop and one body mask for every channel
    if ct:
        try:
            box = body_bounding_box(data[reference])
        except ValueError:
            return skipped("has no voxel above -500 HU (no body)")
        body = body_mask(data[(reference, *box)])
    else:
        masked = plans.get_configuration(preprocessing.configuration).use_mask_for_norm[reference]
        air = scan_air(data, [False] * len(data), masked, preprocessing.spacing)
        try:
            box = air_bounding_box(air)
        except ValueError:
            return skipped(f"channel {reference} holds no data (every voxel zero or dark)")
        body = body_from_air(air[box])
        del air
    data = np.ascontiguousarray(data[(slice(None), *box)])
    body_voxels = int(np.count_nonzero(body))
    if body_voxels < num_positions:
        return skipped(f"its body has {body_voxels} voxels (after cropping to {data.shape[1:]} voxels at "
                       f"{tuple(preprocessing.spacing)} mm), fewer than the m = {num_positions} distinct positions a "
                       f"pre-training pair samples (--num_positions)")
    properties.update(vox2vec_source=task.image_file, vox2vec_crop=[[s.start, s.stop] for s in box],
                      vox2vec_body_voxels=body_voxels,
                      vox2vec_use_mask_for_norm=list(plans.get_configuration(preprocessing.configuration)
                                                     .use_mask_for_norm))
    blocks, chunks = comp_blosc2_params(data.shape, preprocessing.patch_size, bytes_per_pixel=4)
    output = Path(output_folder)
    partial = output / f"{TMP_PREFIX}{task.identifier}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    nnUNetDatasetBlosc2.save_case(data.astype(np.float32, copy=False), body[None].astype(np.int8), properties,
                                  str(partial / task.identifier), chunks=chunks, blocks=blocks)
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):  # properties last: the "finished" marker
        os.replace(partial / f"{task.identifier}{suffix}", output / f"{task.identifier}{suffix}")
    partial.rmdir()
    return CaseResult(task.identifier, task.image_file, "done", shape=tuple(int(s) for s in data.shape[1:]))


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
        result.append(t if n == 0 else replace(t, identifier=f"{t.identifier}_{n}"))
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
        "name": raw_folder.name, **preprocessing.dataset_json, "numTraining": len(identifiers),
        "file_ending": ".nii.gz",
        "description": "vox2vec pre-training set: unlabeled images, preprocessed and body-masked by "
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
