"""Synthetic MR-like volumes for the tests: no physical unit, a bias field, zero padding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

NOISE = 0.03
SPACING = (4.0, 1.5, 1.5)
"""(z, y, x) mm: thick slices, as many MR series have."""


def mr_volume(shape: tuple[int, int, int] = (14, 72, 84), seed: int = 0, scale: float = 800.0,
              contrast: str = "T1") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An MR-like trunk, its true body mask and labels (1 organ, 2 lungs), ``(z, y, x)``.

    Air is Rician noise near 0; the body is an ellipse (its size varies over the slices) with a
    bright subcutaneous fat ring (T1) or a dark one ("T2": fat darker than soft tissue), soft
    tissue at mid intensity, an organ, two dark lungs and a dark spine enclosed by the body; a
    smooth multiplicative bias field (0.6-1.5) over everything; the intensities multiplied by
    ``scale``; a zero-padded border (4 columns on the left, 3 rows at the bottom), as an MR
    outside its field of view.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float64)
    cy, cx = shape[1] * (0.48 + 0.04 * rng.random()), shape[2] * (0.5 + 0.04 * rng.random())
    grow = 1.0 + 0.08 * np.sin(np.pi * z / shape[0])
    ry, rx = 0.33 * shape[1] * grow, 0.4 * shape[2] * grow
    radius = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    body = radius <= 1.0
    fat, tissue, organ, dark = (1.0, 0.45, 0.35, 0.06) if contrast == "T1" else (0.5, 0.8, 0.6, 0.06)
    signal = np.where(body, tissue, 0.0)
    signal[body & (radius > 0.86)] = fat
    labels = np.zeros(shape, dtype=np.uint8)
    labels[((y - cy - 2) / (0.35 * ry)) ** 2 + ((x - cx - 0.3 * rx) / (0.3 * rx)) ** 2 <= 1] = 1
    for side in (-1, 1):  # lungs
        labels[((y - cy + 0.15 * ry) / (0.4 * ry)) ** 2 + ((x - cx - side * 0.45 * rx) / (0.25 * rx)) ** 2 <= 1] = 2
    signal[labels == 1] = organ
    signal[labels == 2] = dark
    signal[((y - cy - 0.6 * ry) / (0.12 * ry)) ** 2 + ((x - cx) / (0.1 * rx)) ** 2 <= 1] = dark  # spine
    bias = np.exp(0.35 * (y / shape[1] - 0.5) + 0.3 * (x / shape[2] - 0.5) + 0.2 * (z / shape[0] - 0.5))
    noise = NOISE * rng.standard_normal((2, *shape))
    image = scale * np.abs(signal * bias + noise[0] + 1j * noise[1])
    image[:, :, :4] = 0.0
    image[:, -3:, :] = 0.0
    body[:, :, :4] = False
    body[:, -3:, :] = False
    return image.astype(np.float32), body, labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def write_raw_dataset(raw_root: Path, dataset_id: int, name: str, channel_names: dict[str, str],
                      cases: dict[str, list[np.ndarray]], labels: dict[str, np.ndarray] | None = None,
                      spacing: tuple[float, float, float] = SPACING) -> Path:
    """An nnU-Net raw dataset: ``cases`` maps a case to its channels ``(z, y, x)``; cases with a
    label go to imagesTr, the others to imagesTs."""
    folder = raw_root / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "imagesTs", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    labels = labels or {}

    def write(array: np.ndarray, path: Path) -> None:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK: (x, y, z)
        sitk.WriteImage(image, str(path))

    for case, channels in cases.items():
        sub = "imagesTr" if case in labels else "imagesTs"
        for c, channel in enumerate(channels):
            write(channel, folder / sub / f"{case}_{c:04d}.nii.gz")
        if case in labels:
            write(labels[case], folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": channel_names, "labels": {"background": 0, "organ": 1, "lungs": 2},
        "numTraining": len(labels), "file_ending": ".nii.gz"}, indent=2))
    return folder
