"""``vox2vec_nnunet_embed``: pictures of the voxel representations a vox2vec FPN computes.

Example::

    vox2vec_nnunet_embed -i ct.nii.gz -w checkpoint_final.pth -o pictures --voxel 40 120 200 \\
        --target other_ct.nii.gz
    vox2vec_nnunet_embed -i case_0000.nii.gz case_0001.nii.gz -w mr_checkpoint_final.pth -o pictures


writes, for the middle axial, coronal and sagittal slices, the image beside its
representations coloured by PCA; with ``--voxel``, the slices through that voxel with a third
panel, the cosine similarity of every voxel to it; with ``--target``, the slices of the
other image through its best-matching voxel, coloured with the query image's PCA (equal
colours = similar representations). A multi-channel image is given as one file per channel
(nnU-Net's convention), in the order of the channel names: those the weights file records (a
pre-training checkpoint does), else ``--channel_names``, else CT for a single-channel FPN.
Conventions (orientation, normalisation per channel, level-by-level computation, memory) are
in :mod:`vox2vec_nnunet.embedding`.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.embedding import (DEFAULT_DISPLAY_WINDOW, DISPLAY_PERCENTILES, PLANES, EmbeddedImage,
                                      PcaColours, PreparedImage, best_match, channel_names_for,
                                      cosine_similarity_map, load_fpn, preprocess_image, query_representation,
                                      save_png)
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.network.fpn import FPN3d, dense_representations
from vox2vec_nnunet.pretraining.prepare import file_stem
from vox2vec_nnunet_plans.builder import SEGMENTATION_CONFIGURATION, default_settings

SUMMARY_FILE = "embedding_summary.json"
#: Default bound on the full-resolution representation ``--save_features`` writes (float32, before compression).
DEFAULT_MAX_FEATURES_GB = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    spacing = list(default_settings(SEGMENTATION_CONFIGURATION).spacing)
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_embed",
        description="Look at the voxel representations of a vox2vec FPN (paper Sect. 3.2). The image (one file "
                    "per channel) is read with nnU-Net's reader and preprocessed like the 3d_vox2vec configuration "
                    "(resampled, slice axis first; a CT channel by the HU window (-1350, 1000) -> [0, 1], any other "
                    "channel z-scored, as nnU-Net normalises a channel of that name); the FPN runs over the whole "
                    "volume at once (about 0.5 kB per voxel with the paper's FPN), so a large image may need a GPU. "
                    "Pictures show the first channel and are in the patient frame whatever the file's direction: "
                    "axial in radiological display (anterior up, patient right on the left), coronal and sagittal "
                    "with superior up (sagittal: anterior on the left), pixel aspect from the spacing.")
    p.add_argument("-i", "--image", type=Path, nargs="+", required=True, metavar="CHANNEL_FILE",
                   help="the image, one file per channel in the order of the channel names (nnU-Net's "
                        "case_0000.nii.gz case_0001.nii.gz ...), any format nnU-Net reads; a CT in HU")
    p.add_argument("-w", "--weights", type=Path, required=True,
                   help="checkpoint with backbone.* weights (pre-training, segmentation, or "
                        "vox2vec_nnunet_import_weights output) or the released plain FPN state dict")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the pictures")
    p.add_argument("--channel_names", nargs="+", metavar="NAME",
                   help="what the image's channels are, as in dataset.json (e.g. T1 T2; CT), which decides each "
                        "channel's normalisation (CT: the HU window; other names: z-scoring); default: the names "
                        "the weights file records (pre-training checkpoints do), else CT for a single-channel FPN")
    p.add_argument("--spacing", nargs=3, type=float, default=spacing, metavar=("SLICE", "INPLANE", "INPLANE"),
                   help="spacing in mm the image is resampled to; must match the pre-training "
                        "(default: %(default)s)")
    p.add_argument("--voxel", nargs=3, type=int, metavar=("A0", "A1", "A2"),
                   help="query voxel: an index into the preprocessed array (slice axis first; the command prints "
                        "where each axis runs in the patient); draws the cosine similarity of every voxel to it")
    p.add_argument("--target", type=Path, nargs="+", metavar="CHANNEL_FILE",
                   help="another image (one file per channel, like -i): find and draw its voxel most similar to "
                        "--voxel")
    p.add_argument("--save_features", action="store_true",
                   help="also write the full-resolution representation (channels, A0, A1, A2) as a compressed .npz")
    p.add_argument("--max_features_gb", type=float, default=DEFAULT_MAX_FEATURES_GB,
                   help="refuse --save_features when the representation (float32, uncompressed) is larger "
                        "(default: %(default)s)")
    p.add_argument("--display_window", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help=f"window of the grey panels (the first channel): in HU for CT (default "
                        f"{' '.join(f'{v:g}' for v in DEFAULT_DISPLAY_WINDOW)}), in the network's z-scored units "
                        f"for other channels (default: percentiles {DISPLAY_PERCENTILES[0]:g} and "
                        f"{DISPLAY_PERCENTILES[1]:g} of the channel in the body, per image)")
    p.add_argument("-device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device for the network (default: %(default)s)")
    args = p.parse_args(argv)
    if args.target is not None and args.voxel is None:
        p.error("--target needs --voxel (the query voxel in --image)")
    if any(s <= 0 for s in args.spacing):
        p.error(f"--spacing must be positive, got {args.spacing}")
    if args.display_window is not None and args.display_window[0] >= args.display_window[1]:
        p.error(f"--display_window needs LOW < HIGH, got {args.display_window}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise Vox2VecError("-device cuda: no CUDA device is available; use -device cpu")
    return args


def channels_named_by(recorded: dict[str, str] | None, given: list[str] | None) -> str:
    """Where the channel names come from (:func:`vox2vec_nnunet.embedding.channel_names_for`)."""
    if given:
        return "--channel_names"
    return "recorded in the weights file" if recorded else "default: a single-channel FPN embeds CT"


def check_voxel(voxel: list[int], image: PreparedImage) -> tuple[int, int, int]:
    if any(not 0 <= v < n for v, n in zip(voxel, image.shape)):
        raise Vox2VecError(f"--voxel {' '.join(map(str, voxel))} is outside the preprocessed image "
                           f"{image.path} of shape {list(image.shape)} (indices start at 0)")
    return tuple(voxel)


def feature_bytes(fpn: FPN3d, image: PreparedImage) -> int:
    return 4 * fpn.representation_dim * int(np.prod(image.shape))


def save_features(path: Path, embedded: EmbeddedImage) -> None:
    """The full-resolution representation ``(D, A0, A1, A2)`` float32, with the network's input image
    ``(C, A0, A1, A2)``, its spacing and its channel names."""
    representation = dense_representations(embedded.pyramid)[0].cpu().numpy()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, representation=representation, image=embedded.image.volume,
                                spacing=np.asarray(embedded.image.spacing),
                                channel_names=np.asarray(embedded.image.channel_names))

    write_atomically(path, write)


def similarity_range(similarity: np.ndarray) -> tuple[float, float]:
    """Colour range of a similarity map: its 1st percentile to its maximum."""
    return float(np.percentile(similarity, 1.0)), float(similarity.max())


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    fpn, recorded = load_fpn(args.weights)
    channel_names = channel_names_for(fpn.in_channels, recorded, args.channel_names, args.weights)
    print(f"channels {list(channel_names)} ({channels_named_by(recorded, args.channel_names)})"
          + (f"; the weights were pre-trained on {recorded}" if args.channel_names and recorded else ""))
    image = preprocess_image(args.image, args.spacing, channel_names)
    print(f"{image.path}: preprocessed to {list(image.shape)} voxels at {list(image.spacing)} mm "
          f"({'; '.join(image.frame.describe())}); " + ", ".join(
              f"{c} {n!r} -> {s}" for c, (n, s) in enumerate(zip(image.channel_names, image.normalization_schemes))))
    voxel = check_voxel(args.voxel, image) if args.voxel is not None else None
    if args.save_features and feature_bytes(fpn, image) > args.max_features_gb * 1e9:
        raise Vox2VecError(f"--save_features: the full-resolution representation of {image.path} would take "
                           f"{feature_bytes(fpn, image) / 1e9:.1f} GB ({fpn.representation_dim} x "
                           f"{int(np.prod(image.shape)):,} voxels, float32), above --max_features_gb "
                           f"{args.max_features_gb}; crop the image to a smaller region, or raise the limit")
    target = preprocess_image(args.target, args.spacing, channel_names) if args.target is not None else None
    args.output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    start = time.perf_counter()
    embedded = EmbeddedImage.compute(image, fpn, device)
    seconds = time.perf_counter() - start
    print(f"FPN ({fpn.base_channels} base channels, {fpn.num_levels} levels, {fpn.representation_dim}-d "
          f"representations) over {int(np.prod(image.shape)):,} voxels on {device}: {seconds:.1f} s")
    try:
        pca = PcaColours.fit(embedded.pyramid, embedded.body)
    except ValueError as e:
        raise Vox2VecError(f"{image.path}: {e}") from None
    embedded.colour_with(pca)
    window = tuple(args.display_window) if args.display_window is not None else embedded.display_window()
    stem = file_stem(image.path)
    for plane in PLANES:
        path = args.output / f"{stem}_{plane}.png"
        save_png(path, embedded.picture(plane, embedded.middle(), window))
        written.append(path)

    summary: dict = {"image": [str(p) for p in image.paths], "weights": str(args.weights),
                     "channels": {**image.describe(), "named_by": channels_named_by(recorded, args.channel_names)},
                     "spacing": list(image.spacing), "preprocessed_shape": list(image.shape),
                     "axes": image.frame.describe(), "display_window": list(window),
                     "fpn": {"base_channels": fpn.base_channels, "num_levels": fpn.num_levels,
                             "representation_dim": fpn.representation_dim},
                     "device": str(device), "fpn_seconds": round(seconds, 3)}
    if voxel is not None:
        query = query_representation(embedded.pyramid, voxel)
        similarity = cosine_similarity_map(query, embedded.pyramid).cpu().numpy()
        colour_range = similarity_range(similarity)
        summary["voxel"] = {"index": list(voxel), "similarity_colour_range": colour_range}
        for plane in PLANES:
            path = args.output / f"{stem}_voxel_{'_'.join(map(str, voxel))}_{plane}.png"
            save_png(path, embedded.picture(plane, voxel, window, similarity, colour_range, marked=True))
            written.append(path)
        if target is not None:
            start = time.perf_counter()
            other = EmbeddedImage.compute(target, fpn, device)
            other.colour_with(pca)  # the query image's colours: equal colours = similar representations
            target_similarity = cosine_similarity_map(query, other.pyramid)
            match, value = best_match(target_similarity)
            target_similarity = target_similarity.cpu().numpy()
            print(f"{target.path}: preprocessed to {list(target.shape)} voxels "
                  f"({'; '.join(target.frame.describe())}); FPN {time.perf_counter() - start:.1f} s")
            print(f"Best match of voxel {list(voxel)} of {image.path} in {target.path}: voxel {list(match)} "
                  f"(preprocessed array index), cosine similarity {value:.4f}")
            target_window = tuple(args.display_window) if args.display_window is not None else other.display_window()
            target_stem = file_stem(target.path)
            for plane in PLANES:
                path = args.output / f"{target_stem}_match_{'_'.join(map(str, match))}_{plane}.png"
                save_png(path, other.picture(plane, match, target_window, target_similarity,
                                             similarity_range(target_similarity), marked=True))
                written.append(path)
            summary["target"] = {"image": [str(p) for p in target.paths], "preprocessed_shape": list(target.shape),
                                 "axes": target.frame.describe(), "display_window": list(target_window),
                                 "best_match": list(match), "similarity": value}
    if args.save_features:
        path = args.output / f"{stem}_features.npz"
        save_features(path, embedded)
        written.append(path)
    summary["files"] = [str(p) for p in written]
    summary_path = args.output / SUMMARY_FILE
    write_atomically(summary_path, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    for path in [*written, summary_path]:
        print(f"wrote {path}")
    return 0
