"""Small pre-training datasets on disk, written with nnU-Net's own dataset classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from nnunetv2.training.dataloading.nnunet_dataset import (comp_blosc2_params, nnUNetDatasetBlosc2,
                                                          nnUNetDatasetNumpy)

from vox2vec_nnunet.pretraining.body_mask import body_mask


def phantom(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Soft-tissue ellipse (40 HU) in air with a lung (-850) and a gas bubble; noise makes
    every voxel value distinct so a patch can be located in its volume."""
    _, y, x = np.indices(shape)
    cy, cx = shape[1] / 2, shape[2] / 2
    image = np.where(((y - cy) / (0.4 * shape[1])) ** 2 + ((x - cx) / (0.4 * shape[2])) ** 2 <= 1, 40.0, -1000.0)
    image[((y - cy) / 5) ** 2 + ((x - cx + 5) / 4) ** 2 <= 1] = -850.0
    image[min(2, shape[0] - 1):4, int(cy), int(cx) - 5] = -1000.0
    return (image + rng.normal(0, 5, shape)).astype(np.float32)


def write_dataset(folder: Path, shapes: list[tuple[int, int, int]], patch_size: tuple[int, int, int],
                  blosc2: bool = True, body_voxels_property: bool = False) -> dict[str, np.ndarray]:
    """Cases ``case_000``, ... saved with nnU-Net's dataset classes; ``seg`` holds the body mask.

    ``body_voxels_property`` stores the body-voxel count as the preparation step does.
    """
    rng = np.random.default_rng(0)
    volumes = {}
    for i, shape in enumerate(shapes):
        image = phantom(shape, rng)
        seg = body_mask(image)[None].astype(np.int8)
        properties = {"shape": shape}
        if body_voxels_property:
            properties["vox2vec_body_voxels"] = int(seg.sum())
        name = str(folder / f"case_{i:03d}")
        if blosc2:
            blocks, chunks = comp_blosc2_params((1, *shape), patch_size)
            nnUNetDatasetBlosc2.save_case(image[None], seg, properties, name, chunks=chunks, blocks=blocks)
        else:
            nnUNetDatasetNumpy.save_case(image[None], seg, properties, name)
        volumes[f"case_{i:03d}"] = image
    return volumes
