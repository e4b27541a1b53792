"""Phantom datasets written in nnU-Net v2's raw layout (``DatasetXXX_NAME``)."""
from __future__ import annotations

import json
import multiprocessing
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from vox2vec_nnunet.phantoms.anatomy import PHANTOM_LABELS, Subject
from vox2vec_nnunet.phantoms.clinical import ClinicalConfig
from vox2vec_nnunet.phantoms.ct import PhantomConfig, ct_slabs
from vox2vec_nnunet.phantoms.geometry import ScanGeometry, origin_lps
from vox2vec_nnunet.phantoms.mr import MRConfig, mr_slabs

_DESCRIPTION = {
    "CT": "Synthetic abdominal CT phantoms (vox2vec_nnunet.phantoms): HU images, LPS orientation; imagesTs "
          "holds unlabeled subjects for pre-training.",
    "MR": "Synthetic abdominal MR phantoms (vox2vec_nnunet.phantoms.mr): T1-/T2-weighted contrast in arbitrary "
          "units with a bias field and Rician noise, LPS orientation; imagesTs holds unlabeled subjects for "
          "pre-training.",
}


def case_seed(seed: int, case_index: int) -> int:
    """Seed of case ``case_index`` of a dataset written with ``seed``: an independent stream
    per (seed, case), so datasets with neighbouring seeds share no subjects."""
    return int(np.random.SeedSequence([int(seed), int(case_index)]).generate_state(1, np.uint32)[0])


def _to_sitk(array: np.ndarray, geometry: ScanGeometry) -> sitk.Image:
    image = sitk.GetImageFromArray(array)  # (z, y, x) array -> image of size (x, y, z)
    image.SetSpacing(tuple(float(s) for s in geometry.spacing[::-1]))  # SimpleITK order: x, y, z
    image.SetOrigin(origin_lps(geometry.shape, geometry.spacing, geometry.centre_mm))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))  # LPS, see vox2vec_nnunet.phantoms.geometry
    return image


def _write_case(job: tuple[str, int, ScanGeometry, PhantomConfig | ClinicalConfig | MRConfig, str, str | None]
                ) -> str:
    """Make one subject and write its image(s) and, if ``labels_dir`` is given, its label map
    (uint8): CT as int16 HU (as CT is stored), MR as float32, one image per channel."""
    case_id, seed, geometry, config, images_dir, labels_dir = job
    if isinstance(config, MRConfig):
        _write_mr_case(case_id, seed, geometry, config, Path(images_dir), labels_dir)
    else:
        _write_ct_case(case_id, seed, geometry, Path(images_dir), labels_dir)
    return case_id


def _write_labels(labels: np.ndarray, geometry: ScanGeometry, case_id: str, labels_dir: str) -> None:
    sitk.WriteImage(_to_sitk(labels, geometry), str(Path(labels_dir) / f"{case_id}.nii.gz"), True)


def _write_ct_case(case_id: str, seed: int, geometry: ScanGeometry, images_dir: Path, labels_dir: str | None) -> None:
    """The image is rounded slab by slab, so a clinical-size scan needs 3 bytes per voxel plus
    one slab's working memory (and SimpleITK's copy of each array while it is written)."""
    hu = np.empty(geometry.shape, dtype=np.int16)
    labels = np.empty(geometry.shape, dtype=np.uint8) if labels_dir is not None else None
    for rows, image_rows, label_rows in ct_slabs(Subject(seed, geometry)):
        np.rint(image_rows, out=image_rows)
        hu[rows] = image_rows
        if labels is not None:
            labels[rows] = label_rows
    sitk.WriteImage(_to_sitk(hu, geometry), str(images_dir / f"{case_id}_0000.nii.gz"), True)
    del hu
    if labels is not None:
        _write_labels(labels, geometry, case_id, labels_dir)


def _write_mr_case(case_id: str, seed: int, geometry: ScanGeometry, config: MRConfig, images_dir: Path,
                   labels_dir: str | None) -> None:
    images = [np.empty(geometry.shape, dtype=np.float32) for _ in config.channels]
    labels = np.empty(geometry.shape, dtype=np.uint8)
    for rows, channel_rows, label_rows in mr_slabs(Subject(seed, geometry), config.scan(seed)):
        for image, image_rows in zip(images, channel_rows):
            image[rows] = image_rows
        labels[rows] = label_rows
    for channel, image in enumerate(images):
        sitk.WriteImage(_to_sitk(image, geometry), str(images_dir / f"{case_id}_{channel:04d}.nii.gz"), True)
    if labels_dir is not None:
        _write_labels(labels, geometry, case_id, labels_dir)


def write_nnunet_raw_dataset(raw_root: Path, dataset_id: int, name: str, num_labeled: int,
                             num_unlabeled: int = 0, seed: int = 0,
                             config: PhantomConfig | ClinicalConfig | MRConfig = PhantomConfig(),
                             num_processes: int = 1, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``raw_root/Dataset{ID:03d}_{name}`` in nnU-Net v2's raw layout and return it.

    Labeled cases ``phantom_0000`` ... go to ``imagesTr`` (``{case}_0000.nii.gz``) and
    ``labelsTr``; the unlabeled ones, numbered on after them, go to ``imagesTs`` (nnU-Net never
    preprocesses that folder; it serves self-supervised pre-training).
    Case i is the independent subject ``case_seed(seed, i)``, scanned with
    ``config.case_geometry(case_seed(seed, i))``: the same field of view for every case with a
    :class:`PhantomConfig` (``make_phantom``), a scan drawn per case with a
    :class:`vox2vec_nnunet.phantoms.clinical.ClinicalConfig`, an MR scan drawn per case with a
    :class:`vox2vec_nnunet.phantoms.mr.MRConfig` (one image ``{case}_{channel:04d}.nii.gz`` per
    contrast, the contrasts as ``channel_names``: not ``CT``, so nnU-Net z-scores them; the same
    labels as CT). ``dataset.json`` records the seeds, the configuration and every case's scan geometry. The dataset is assembled in a
    hidden sibling folder and moved into place when complete. An existing dataset folder is
    replaced only with ``overwrite=True``; another dataset with the same ID is an error.
    """
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset_id must be in 1..999 (nnU-Net's DatasetXXX_ names), got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    if num_labeled < 1:
        raise ValueError(f"num_labeled must be >= 1 (nnU-Net needs labeled training cases), got {num_labeled}")
    if num_unlabeled < 0 or num_processes < 1 or seed < 0:
        raise ValueError(f"num_unlabeled and seed must be >= 0 and num_processes >= 1, got "
                         f"num_unlabeled={num_unlabeled}, seed={seed}, num_processes={num_processes}")
    raw_root = Path(raw_root)
    folder_name = f"Dataset{int(dataset_id):03d}_{name}"
    target = raw_root / folder_name
    clashes = sorted(p.name for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if p.name != folder_name)
    if clashes:
        raise FileExistsError(f"{raw_root} already holds dataset ID {dataset_id} as {clashes}; nnU-Net finds "
                              f"datasets by ID, so choose another ID or remove it")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to replace it")

    staging = raw_root / f".{folder_name}.incomplete"
    if staging.exists():
        shutil.rmtree(staging)
    dirs = {sub: staging / sub for sub in ("imagesTr", "labelsTr", "imagesTs")}
    for sub, path in dirs.items():
        if sub != "imagesTs" or num_unlabeled:
            path.mkdir(parents=True)
    seeds = {f"phantom_{i:04d}": case_seed(seed, i) for i in range(num_labeled + num_unlabeled)}
    geometries = {case: config.case_geometry(s) for case, s in seeds.items()}
    jobs = [(case, s, geometries[case], config, str(dirs["imagesTr"] if i < num_labeled else dirs["imagesTs"]),
             str(dirs["labelsTr"]) if i < num_labeled else None)
            for i, (case, s) in enumerate(seeds.items())]
    with tqdm(total=len(jobs), desc=folder_name, unit="case", disable=not progress) as bar:
        if num_processes == 1:
            for job in jobs:
                _write_case(job)
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
                for _ in pool.imap_unordered(_write_case, jobs):
                    bar.update()

    mr = isinstance(config, MRConfig)
    dataset_json = {
        "name": name,
        "description": _DESCRIPTION["MR" if mr else "CT"],
        "channel_names": {str(i): channel for i, channel in enumerate(config.channels)} if mr else {"0": "CT"},
        "labels": dict(PHANTOM_LABELS),
        "numTraining": num_labeled,
        "numTest": num_unlabeled,
        "file_ending": ".nii.gz",
        "phantoms": {"seed": seed, "config_type": type(config).__name__, "config": asdict(config),
                     "case_seeds": seeds, "case_geometries": {c: asdict(g) for c, g in geometries.items()}},
    }
    (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
