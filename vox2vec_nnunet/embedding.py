"""Pictures of the learned voxel representations (paper Sect. 3.2, Fig. 1 right).

A vox2vec representation of a voxel is the concatenation of the FPN's level-``i`` feature
vectors at the voxel's cell ``floor(coordinate / 2**i)`` (1008 dimensions for the paper's
FPN; ``vox2vec_nnunet.network.fpn.voxel_representations``). Materialising that for every
voxel of a CT at full resolution would take 1008 x 4 bytes per voxel (tens of GB), so every
whole-volume quantity here is computed *level by level*: a linear function of the
representation (a PCA projection, a dot product with a query) and the squared norm are sums
over levels, each computed at the level's own resolution and read out at full resolution
by nearest-neighbour upsampling (:func:`levelwise_sum`). Memory is O(voxels), never
O(1008 x voxels).

Array convention. Images (one file per channel, nnU-Net's convention) are read with nnU-Net's
reader and preprocessed with nnU-Net's ``DefaultPreprocessor`` under the ``3d_vox2vec``
configuration (resampled to the given spacing, slice axis first; each channel normalised as
nnU-Net normalises a channel of its name, :mod:`vox2vec_nnunet.channels`: a CT channel by the
HU window (-1350, 1000) -> [0, 1], any other channel z-scored, inside the nonzero mask by
nnU-Net's 3/4 rule applied to the scan, as the FPN's pre-training data), exactly as nnU-Net
feeds the network during training and inference; the network runs on that array ("array
order", indices ``(a0, a1, a2)``). The grey panels show the first channel: in HU under a
display window for CT, else between percentiles of the channel in the body.

Display uses the *patient frame*: the same voxels viewed with axes (inferior -> superior,
anterior -> posterior, right -> left), i.e. LPS, obtained by axis permutation and flips read
from the image's direction (:class:`DisplayFrame`), so every picture is oriented the same way
whatever the file's direction:

* axial: radiological display, anterior at the top, patient right on the image's left;
* coronal: superior at the top, patient right on the image's left;
* sagittal: superior at the top, anterior on the image's left;

with the pixel aspect given by the spacing (a 2 mm slice axis spans two pixels of a 1 mm
in-plane grid).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from vox2vec_nnunet.channels import CT_NORMALIZATION, ZSCORE_NORMALIZATION, nnunet_normalization
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.input_channels import checkpoint_channel_names
from vox2vec_nnunet.network.fpn import FPN3d, voxel_representations
from vox2vec_nnunet.pretraining.body_mask import body_from_air, scan_air
from vox2vec_nnunet.pretraining.prepare import NONZERO_CROP_FRACTION, nonzero_crop_fraction, reader_for
from vox2vec_nnunet.weights import (BACKBONE_PREFIX, PUBLISHED_FPN_FILE, import_fpn_state, load_weights_file,
                                    network_weights)
from vox2vec_nnunet_plans.builder import (SEGMENTATION_CONFIGURATION, build_plans, default_settings, load_template,
                                          slice_axis_first)

#: Soft-tissue display window (HU) of the grey panels of a CT: level 40, width 400 (abdomen).
DEFAULT_DISPLAY_WINDOW: tuple[float, float] = (-160.0, 240.0)
#: Display window of a channel without units (MR): these percentiles of its body voxels.
DISPLAY_PERCENTILES = (1.0, 99.0)
#: Voxels drawn (seeded) from the body to fit the PCA colour projection.
PCA_SAMPLES = 10_000
PCA_SEED = 0
#: Each colour channel is stretched so that these percentiles of the fit sample map to 0 and 1.
PCA_PERCENTILES = (1.0, 99.0)
#: Black pixels between the panels of a picture.
PANEL_GAP = 4
PLANES = ("axial", "coronal", "sagittal")
#: Display (patient-frame) axis each plane holds fixed: 0 = inferior-superior, 1 = anterior-posterior, 2 = right-left.
PLANE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
#: Letters at the (left, right, top, bottom) edges of each plane as displayed.
PLANE_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
MARKER_RGB = (0, 255, 0)
LETTER_RGB = (255, 220, 0)
_LPS_NAMES = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))

Grid = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- orientation


def array_axis_directions(properties: Mapping) -> np.ndarray:
    """``(3, 3)``: row ``a`` is the LPS world direction of axis ``a`` of the array the reader returned.

    nnU-Net's readers return ``(z, y, x)`` = the file's index axes ``(k, j, i)``. SimpleITK
    readers keep the direction cosines (LPS, one column per index axis) in ``sitk_stuff``;
    nibabel readers keep the affine (RAS) of the array they return in ``nibabel_stuff``.
    """
    if "sitk_stuff" in properties:
        direction = np.asarray(properties["sitk_stuff"]["direction"], dtype=float)
        if direction.size != 9:
            raise ValueError(f"not a 3-D image (direction has {direction.size} entries)")
        columns = direction.reshape(3, 3)
    elif "nibabel_stuff" in properties:
        stuff = properties["nibabel_stuff"]
        affine = np.asarray(stuff.get("reoriented_affine", stuff["original_affine"]), dtype=float)[:3, :3]
        columns = np.diag([-1.0, -1.0, 1.0]) @ (affine / np.linalg.norm(affine, axis=0))  # RAS -> LPS
    else:
        raise ValueError(f"the reader gives no image direction (properties: {sorted(properties)})")
    return columns[:, ::-1].T.copy()


@dataclass(frozen=True)
class DisplayFrame:
    """How an array's axes lie in the patient: the permutation and flips that view it in LPS.

    ``permutation[v]`` is the array axis shown as patient axis ``v`` (0 = inferior->superior,
    1 = anterior->posterior, 2 = right->left) and ``flipped[v]`` says it runs the other way.
    Oblique directions snap to the nearest patient axis, like SimpleITK's ``DICOMOrient``.
    """

    permutation: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]

    @classmethod
    def from_directions(cls, directions: np.ndarray) -> "DisplayFrame":
        """From the LPS direction of each array axis (rows of ``directions``)."""
        directions = np.asarray(directions, dtype=float)
        world = [int(np.argmax(np.abs(d))) for d in directions]
        if sorted(world) != [0, 1, 2]:
            raise ValueError(f"the image axes are too oblique to tell axial from coronal and sagittal "
                             f"(axis directions in LPS: {np.round(directions, 3).tolist()})")
        permutation, flipped = [0, 0, 0], [False, False, False]
        for axis, (w, d) in enumerate(zip(world, directions)):
            permutation[2 - w] = axis  # LPS world axis w (x=L, y=P, z=S) is patient axis 2 - w
            flipped[2 - w] = bool(d[w] < 0)
        return cls(tuple(permutation), tuple(flipped))

    def view(self, volume: np.ndarray) -> np.ndarray:
        """``volume[..., a0, a1, a2]`` seen in the patient frame (a view, no copy)."""
        lead = volume.ndim - 3
        viewed = np.transpose(volume, [*range(lead), *(lead + a for a in self.permutation)])
        return np.flip(viewed, [lead + v for v in range(3) if self.flipped[v]])

    def to_patient(self, index: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
        """An array index in the patient frame."""
        return tuple(shape[a] - 1 - index[a] if f else index[a] for a, f in zip(self.permutation, self.flipped))

    def to_array(self, index: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
        """A patient-frame index of the array of ``shape`` (array order) as an array index."""
        result = [0, 0, 0]
        for v, (a, f) in enumerate(zip(self.permutation, self.flipped)):
            result[a] = shape[a] - 1 - index[v] if f else index[v]
        return tuple(result)

    def patient_spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        return tuple(float(spacing[a]) for a in self.permutation)

    def describe(self) -> list[str]:
        """Where each array axis runs in the patient, e.g. ``'axis 0: inferior -> superior'``."""
        lines = [""] * 3
        for v, (a, f) in enumerate(zip(self.permutation, self.flipped)):
            low, high = _LPS_NAMES[2 - v]
            lines[a] = f"axis {a}: {high} -> {low}" if f else f"axis {a}: {low} -> {high}"
        return lines


# ----------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class PreparedImage:
    """An image as the network sees it: ``volume`` ``(C, a0, a1, a2)`` (array order, each channel
    normalised as ``normalization_schemes`` say) at ``spacing`` (mm), read from ``paths``, one
    file per channel named by ``channel_names``."""

    paths: tuple[Path, ...]
    volume: np.ndarray
    spacing: tuple[float, float, float]
    frame: DisplayFrame
    channel_names: tuple[str, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]

    @property
    def path(self) -> Path:
        """The file that names the image (its first channel's)."""
        return self.paths[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.volume.shape[1:])

    @property
    def display_is_ct(self) -> bool:
        """Whether the grey panels (the first channel) show HU."""
        return self.normalization_schemes[0] == CT_NORMALIZATION

    def display_volume(self) -> np.ndarray:
        """The first channel in display units: HU for CT, the network's (z-scored) values otherwise."""
        return to_hounsfield(self.volume[0]) if self.display_is_ct else self.volume[0]

    def body(self) -> np.ndarray:
        """The body mask (``pretraining.body_mask``): from the first CT channel, else unit-free from channel 0."""
        ct = [s == CT_NORMALIZATION for s in self.normalization_schemes]
        if any(ct):  # the first CT channel, in HU
            return body_from_air(scan_air(to_hounsfield(self.volume[ct.index(True)])[None], [True], False,
                                          self.spacing))
        return body_from_air(scan_air(self.volume, ct, self.use_mask_for_norm[0], self.spacing))

    def describe(self) -> dict:
        """What the summary records about the channels."""
        return {"channel_names": list(self.channel_names), "normalization_schemes": list(self.normalization_schemes),
                "use_mask_for_norm": list(self.use_mask_for_norm)}


def to_hounsfield(values: np.ndarray) -> np.ndarray:
    """Preprocessed intensities of a CT channel back in HU (values outside the model's window were clipped to it)."""
    low, high = load_template()["hu_window"]
    return low + values * (high - low)


def channel_names_for(in_channels: int, recorded: Mapping[str, str] | None, given: Sequence[str] | None,
                      weights: Path) -> tuple[str, ...]:
    """The channel names of the images an FPN of ``in_channels`` input channels embeds: ``given``
    (``--channel_names``), else those the ``weights`` file ``recorded``, else CT for one channel."""
    if given:
        if len(given) != in_channels:
            raise Vox2VecError(f"--channel_names {' '.join(given)}: {len(given)} name(s), but the FPN of {weights} "
                               f"takes {in_channels} input channel(s); pass {in_channels} name(s)")
        return tuple(given)
    if recorded:
        if len(recorded) != in_channels:
            raise Vox2VecError(f"{weights}: records the channels {dict(recorded)}, but its FPN takes {in_channels} "
                               f"input channel(s); name them with --channel_names")
        return tuple(recorded[str(c)] for c in range(in_channels))
    if in_channels == 1:
        return ("CT",)
    raise Vox2VecError(f"{weights}: its FPN takes {in_channels} input channels and the file records no channel names; "
                       f"name them with --channel_names, one name per channel (e.g. --channel_names T2 T1)")


def _read_channels(paths: Sequence[Path]) -> tuple[np.ndarray, dict, type]:
    """nnU-Net's reader on the channel files together: ``(C, ...)`` array, properties, reader class."""
    for path in paths:
        if not path.is_file():
            raise Vox2VecError(f"{path}: no such file")
    try:
        reader = reader_for(str(paths[0]))
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints its complaints; ours name the files
            return (*reader().read_images(tuple(str(p) for p in paths)), reader)
    except Exception as e:  # any reader failure means an unreadable image
        if len(paths) > 1:
            geometry = {}
            for path in paths:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        array, properties = reader_for(str(path))().read_images((str(path),))
                    geometry[path] = (tuple(int(n) for n in array.shape[1:]),
                                      tuple(round(float(v), 6) for v in properties["spacing"]))
                except Exception as single:
                    raise Vox2VecError(f"{path}: cannot be read by nnU-Net's readers ({type(single).__name__}: "
                                       f"{single})") from None
            differ = [what for what, i in (("shapes", 0), ("spacings", 1))
                      if len({g[i] for g in geometry.values()}) > 1]
            if differ:
                raise Vox2VecError(f"the channel files are not one image: channels of different "
                                   f"{' and '.join(differ)} (" + "; ".join(
                                       f"{p}: shape {list(g[0])}, spacing {list(g[1])} mm"
                                       for p, g in geometry.items()) + ")") from None
        raise Vox2VecError(f"{', '.join(map(str, paths))}: cannot be read by nnU-Net's readers "
                           f"({type(e).__name__}: {e})") from None


def preprocess_image(paths: Sequence[Path], spacing: Sequence[float], channel_names: Sequence[str]) -> PreparedImage:
    """Read the channel files ``paths`` together with nnU-Net's reader and preprocess them like the
    ``3d_vox2vec`` configuration for channels named ``channel_names``.

    ``spacing`` is slice axis first (like the plans); the slice axis is the file's coarsest
    axis, put first as nnU-Net's planner does (``slice_axis_first``). A channel nnU-Net
    z-scores is z-scored inside the nonzero mask when cropping to it keeps less than 3/4 of the
    image (nnU-Net's planner rule, applied to this image as to each pre-training scan).
    """
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    paths = tuple(Path(p) for p in paths)
    named = ", ".join(map(str, paths))
    image, properties, reader = _read_channels(paths)
    if image.ndim != 4 or min(image.shape[1:]) < 2:
        raise Vox2VecError(f"{named}: expected a 3-D image, got an array of shape {image.shape[1:]}")
    if image.shape[0] != len(channel_names):
        names = list(channel_names)
        raise Vox2VecError(f"{named}: {image.shape[0]} channel(s), but the FPN's first convolution takes "
                           f"{len(names)} input channel(s) ({names}); pass {len(names)} file(s), one per channel in "
                           f"this order: {' '.join(f'<{n}>' for n in names)}")
    if not np.isfinite(image).all():
        raise Vox2VecError(f"{named}: holds NaN or infinite values")
    try:
        directions = array_axis_directions(properties)
    except ValueError as e:
        raise Vox2VecError(f"{named}: {e}") from None
    settings = default_settings(SEGMENTATION_CONFIGURATION).with_overrides(spacing=spacing)
    transpose = slice_axis_first(properties["spacing"])
    masked = nonzero_crop_fraction(image) < NONZERO_CROP_FRACTION
    use_mask = tuple(masked and nnunet_normalization(n) == ZSCORE_NORMALIZATION for n in channel_names)
    plans = PlansManager(build_plans("embedding", "embedding", {SEGMENTATION_CONFIGURATION: settings},
                                     reader.__name__, transpose, channel_names, [1.0, 1.0, 1.0], [1, 1, 1],
                                     use_mask_for_norm=use_mask))
    configuration = plans.get_configuration(SEGMENTATION_CONFIGURATION)
    data, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        image, None, properties, plans, configuration,
        {"labels": {"background": 0}, "channel_names": {str(c): n for c, n in enumerate(channel_names)}})
    try:
        frame = DisplayFrame.from_directions(directions[transpose])
    except ValueError as e:
        raise Vox2VecError(f"{named}: {e}") from None
    return PreparedImage(paths, np.ascontiguousarray(data, dtype=np.float32), tuple(settings.spacing), frame,
                         tuple(channel_names), tuple(configuration.normalization_schemes), use_mask)


# ----------------------------------------------------------------------------- network


def load_fpn(path: Path) -> tuple[FPN3d, dict[str, str] | None]:
    """The FPN of a weights file, built from the weights' shapes (input channels, base channels,
    levels), and the channel names the file records (pre-training checkpoints do), or None.

    Accepts every file whose state dict has ``backbone.*`` entries (a pre-training or
    segmentation checkpoint, the output of ``vox2vec_nnunet_import_weights``) and the
    authors' plain FPN state dict (``first_conv.weight``, ...). Loaded with
    ``weights_only=True``.
    """
    checkpoint = load_weights_file(path, PUBLISHED_FPN_FILE)
    state = network_weights(checkpoint, path, PUBLISHED_FPN_FILE)
    if not any(k.startswith(BACKBONE_PREFIX) for k in state) and "first_conv.weight" not in state:
        raise Vox2VecError(f"{path}: holds no vox2vec FPN backbone (no '{BACKBONE_PREFIX}*' entries and no "
                           f"'first_conv.weight'; first keys: {sorted(state)[:5]}). Expected {PUBLISHED_FPN_FILE}.")
    _, fpn = import_fpn_state(state, Path(path))
    return fpn.eval(), checkpoint_channel_names(checkpoint)


def feature_pyramid(fpn: FPN3d, volume: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    """The FPN's levels for a whole volume ``(C, a0, a1, a2)`` (eval mode, no gradients), kept on ``device``.

    The whole volume goes through the network at once, so memory grows with the volume:
    with the paper's FPN a 90 x 260 x 340 phantom (8 M voxels at 2 x 1 x 1 mm) peaked at
    4.3 GB on the CPU, about 0.5 kB per voxel; a large CT (50 M voxels) needs a GPU with
    that much memory or a machine with tens of GB of RAM.
    """
    fpn.eval().to(device)
    with torch.no_grad():
        return fpn(torch.from_numpy(volume)[None].to(device))


def full_grid(shape: Sequence[int], device: torch.device) -> Grid:
    """Every voxel of an array of ``shape``."""
    return tuple(torch.arange(n, device=device) for n in shape)


def plane_grid(shape: Sequence[int], axis: int, index: int, device: torch.device) -> Grid:
    """The voxels of slice ``index`` along array ``axis`` (that axis keeps length 1)."""
    grid = list(full_grid(shape, device))
    grid[axis] = torch.tensor([index], device=device)
    return tuple(grid)


def levelwise_sum(level_maps: Sequence[torch.Tensor], grid: Grid) -> torch.Tensor:
    """``sum_i level_maps[i][..., z >> i, y >> i, x >> i]`` over the full-resolution voxels of ``grid``.

    ``level_maps[i]`` lives at level ``i``'s resolution (``1 / 2**i``); reading it at the
    voxel's cell is the nearest-neighbour upsampling of the representation (Sect. 3.2).
    Returns ``(..., len(z), len(y), len(x))``.
    """
    zs, ys, xs = grid
    total = None
    for level, fmap in enumerate(level_maps):
        cells = fmap[..., (zs >> level)[:, None, None], (ys >> level)[None, :, None], (xs >> level)[None, None, :]]
        total = cells if total is None else total.add_(cells)
    return total


def query_representation(pyramid: list[torch.Tensor], voxel: Sequence[int]) -> torch.Tensor:
    """The representation ``(C,)`` of one voxel (array order) of the pyramid's image."""
    return voxel_representations(pyramid, torch.tensor([[0, *voxel]]))[0]


def cosine_similarity_map(query: torch.Tensor, pyramid: list[torch.Tensor]) -> torch.Tensor:
    """Cosine similarity ``(Z, Y, X)`` between ``query`` and every voxel's representation.

    Dot products and squared norms are computed per level at the level's resolution and
    summed at full resolution (:func:`levelwise_sum`): O(voxels) memory.
    """
    parts = torch.split(query.to(pyramid[0].device), [fmap.shape[1] for fmap in pyramid])
    level_maps = [torch.stack([torch.tensordot(q, fmap[0], dims=1), fmap[0].square().sum(0)])
                  for q, fmap in zip(parts, pyramid)]
    dot, squared_norm = levelwise_sum(level_maps, full_grid(pyramid[0].shape[2:], pyramid[0].device))
    return (dot / (squared_norm.sqrt() * query.norm()).clamp_min(1e-12)).clamp_(-1.0, 1.0)


def best_match(similarity: torch.Tensor) -> tuple[tuple[int, int, int], float]:
    """The voxel (array order) of highest similarity and its value."""
    flat = int(torch.argmax(similarity))
    return tuple(int(i) for i in np.unravel_index(flat, tuple(similarity.shape))), float(similarity.view(-1)[flat])


@dataclass(frozen=True)
class PcaColours:
    """Representations -> RGB: the first three principal components, each stretched to [0, 1].

    Fit on a seeded random subset of body voxels; the stretch maps the
    ``PCA_PERCENTILES`` of the fit sample's projections to 0 and 1 (then clips), the same
    for every slice and every image coloured with it, so equal colours mean similar
    representations.
    """

    mean: torch.Tensor  # (C,)
    components: torch.Tensor  # (C, 3)
    low: torch.Tensor  # (3,)
    high: torch.Tensor  # (3,)

    @classmethod
    def fit(cls, pyramid: list[torch.Tensor], body: np.ndarray, num_samples: int = PCA_SAMPLES,
            seed: int = PCA_SEED) -> "PcaColours":
        candidates = np.flatnonzero(body)
        if candidates.size == 0:
            raise ValueError("no body voxel to fit the colours on (a CT: none above -500 HU; another image: all of it "
                             "dark or zero)")
        rng = np.random.default_rng(seed)
        chosen = rng.choice(candidates, size=min(num_samples, candidates.size), replace=False)
        positions = np.stack([np.zeros_like(chosen), *np.unravel_index(chosen, body.shape)], axis=1)
        samples = voxel_representations(pyramid, torch.from_numpy(positions)).double()
        mean = samples.mean(0)
        centred = samples - mean
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        components = vectors[:, -3:].flip(1)  # largest variance first
        signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
        components = components * signs  # deterministic sign: largest loading positive
        projected = centred @ components
        low, high = (torch.quantile(projected, q / 100.0, dim=0) for q in PCA_PERCENTILES)
        high = torch.maximum(high, low + 1e-6)
        return cls(mean.float(), components.float(), low.float(), high.float())

    def level_maps(self, pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        """The projection of each level's features, ``(3, level shape)``: colours are their sum."""
        weights = torch.split(self.components.to(pyramid[0].device), [fmap.shape[1] for fmap in pyramid])
        return [torch.tensordot(w.T, fmap[0], dims=1) for w, fmap in zip(weights, pyramid)]

    def colours(self, level_maps: list[torch.Tensor], grid: Grid) -> torch.Tensor:
        """RGB in [0, 1], ``(3, len(z), len(y), len(x))``, of the voxels of ``grid``."""
        device = level_maps[0].device
        offset = (self.mean.to(device) @ self.components.to(device) + self.low.to(device))[:, None, None, None]
        scale = (self.high - self.low).to(device)[:, None, None, None]
        return ((levelwise_sum(level_maps, grid) - offset) / scale).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- pictures


def plane_slice(patient_volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Slice ``index`` of a patient-frame volume ``(S, P, L, ...)`` as displayed (rows, columns, ...).

    Axial: rows anterior -> posterior, columns patient right -> left (radiological).
    Coronal and sagittal: rows superior -> inferior; columns right -> left, resp. anterior -> posterior.
    """
    if plane == "axial":
        return patient_volume[index]
    if plane == "coronal":
        return patient_volume[::-1, index]
    return patient_volume[::-1, :, index]


def plane_position(patient_index: Sequence[int], patient_shape: Sequence[int], plane: str) -> tuple[int, int]:
    """(row, column) of a patient-frame voxel in its ``plane`` slice as displayed."""
    s, p, l = patient_index
    if plane == "axial":
        return p, l
    return patient_shape[0] - 1 - s, (l if plane == "coronal" else p)


def plane_spacing(patient_spacing: Sequence[float], plane: str) -> tuple[float, float]:
    """(row, column) spacing in mm of a displayed plane."""
    s, p, l = patient_spacing
    return {"axial": (p, l), "coronal": (s, l), "sagittal": (s, p)}[plane]


def plane_pixels(rows: int, columns: int, spacing: tuple[float, float], pixel_mm: float) -> tuple[int, int]:
    """Displayed size of a plane of ``rows x columns`` voxels when one pixel spans ``pixel_mm``."""
    return max(1, round(rows * spacing[0] / pixel_mm)), max(1, round(columns * spacing[1] / pixel_mm))


def stretch(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``(rows, columns, ...)`` to ``size`` (physical aspect)."""
    index = [np.minimum((np.arange(n) + 0.5) * image.shape[axis] / n, image.shape[axis] - 1).astype(int)
             for axis, n in enumerate(size)]
    return image[index[0][:, None], index[1][None, :]]


def grey_rgb(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Intensities (HU for CT) -> grey uint8 RGB under a display window (low, high)."""
    low, high = window
    grey = np.clip((values - low) / (high - low), 0.0, 1.0)
    return np.repeat((grey * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


def colour_map_rgb(values: np.ndarray, low: float, high: float, name: str = "inferno") -> np.ndarray:
    """Scalars -> uint8 RGB through a matplotlib colour map over (low, high)."""
    from matplotlib import colormaps

    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    return (colormaps[name](scaled)[..., :3] * 255 + 0.5).astype(np.uint8)


def unit_rgb(colours: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> uint8."""
    return (np.clip(colours, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Panel:
    """One displayed plane: uint8 RGB ``(rows, columns, 3)`` in voxels, before the aspect stretch."""

    rgb: np.ndarray
    letters: bool = False


def compose(panels: Sequence[Panel], plane: str, patient_spacing: Sequence[float],
            marker: tuple[int, int] | None = None) -> np.ndarray:
    """Panels side by side at the physical aspect (one pixel = the finest spacing), ``PANEL_GAP`` apart.

    ``marker`` (row, column in voxels of the displayed plane) is drawn as a cross on every
    panel; orientation letters go on the panels that ask for them.
    """
    from PIL import Image, ImageDraw, ImageFont

    spacing = plane_spacing(patient_spacing, plane)
    rows, columns = panels[0].rgb.shape[:2]
    size = plane_pixels(rows, columns, spacing, min(patient_spacing))
    gap = np.zeros((size[0], PANEL_GAP, 3), np.uint8)
    pieces: list[np.ndarray] = []
    for panel in panels:
        picture = Image.fromarray(np.ascontiguousarray(stretch(panel.rgb, size)))
        draw = ImageDraw.Draw(picture)
        arm = max(3, min(size) // 30)
        if marker is not None:
            r = (marker[0] + 0.5) * size[0] / rows
            c = (marker[1] + 0.5) * size[1] / columns
            for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                draw.line([(c + dc * arm, r + dr * arm), (c + dc * 3 * arm, r + dr * 3 * arm)], fill=MARKER_RGB)
        if panel.letters:
            font = ImageFont.load_default(size=max(8, min(size) // 18))
            left, right, top, bottom = PLANE_LETTERS[plane]
            h, w = size
            for text, xy, anchor in ((left, (2, h / 2), "lm"), (right, (w - 2, h / 2), "rm"),
                                     (top, (w / 2, 2), "mt"), (bottom, (w / 2, h - 2), "mb")):
                draw.text(xy, text, fill=LETTER_RGB, font=font, anchor=anchor)
        pieces += [np.asarray(picture), gap]
    return np.concatenate(pieces[:-1], axis=1)


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from vox2vec_nnunet.atomic import write_atomically

    write_atomically(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))


@dataclass
class EmbeddedImage:
    """A preprocessed image with its feature pyramid, body mask and (once coloured) PCA level maps."""

    image: PreparedImage
    pyramid: list[torch.Tensor]
    body: np.ndarray
    pca: PcaColours | None = None
    pca_maps: list[torch.Tensor] | None = None

    @classmethod
    def compute(cls, image: PreparedImage, fpn: FPN3d, device: torch.device) -> "EmbeddedImage":
        return cls(image, feature_pyramid(fpn, image.volume, device), image.body())

    def display_window(self) -> tuple[float, float]:
        """The grey panels' window without ``--display_window``: the soft-tissue window for CT, else
        :data:`DISPLAY_PERCENTILES` of the first channel in the body."""
        if self.image.display_is_ct:
            return DEFAULT_DISPLAY_WINDOW
        values = self.image.display_volume()[self.body] if self.body.any() else self.image.display_volume()
        low, high = (float(v) for v in np.percentile(values, DISPLAY_PERCENTILES))
        return low, max(high, low + 1e-6)

    def colour_with(self, pca: PcaColours) -> None:
        """Use ``pca`` for the colour panels (another image's PCA gives comparable colours)."""
        self.pca, self.pca_maps = pca, pca.level_maps(self.pyramid)

    def patient_index(self, voxel: Sequence[int]) -> tuple[int, int, int]:
        return self.image.frame.to_patient(voxel, self.image.shape)

    def middle(self) -> tuple[int, int, int]:
        """The centre voxel (array order)."""
        return tuple(n // 2 for n in self.image.shape)

    def picture(self, plane: str, voxel: Sequence[int], window: tuple[float, float],
                similarity: np.ndarray | None = None, similarity_range: tuple[float, float] = (-1.0, 1.0),
                marked: bool = False) -> np.ndarray:
        """The ``plane`` through ``voxel`` (array order): grey image | PCA colours [| similarity].

        PCA colours are computed for that slice's voxels only; voxels outside the body are black.
        """
        if self.pca is None:
            raise ValueError("choose the colours with colour_with() before drawing pictures")
        frame, shape = self.image.frame, self.image.shape
        fixed = PLANE_AXIS[plane]
        patient_index = self.patient_index(voxel)
        grey = plane_slice(frame.view(self.image.display_volume()), plane, patient_index[fixed])
        axis = frame.permutation[fixed]  # the array axis the plane holds fixed
        grid = plane_grid(shape, axis, voxel[axis], self.pyramid[0].device)
        colours = self.pca.colours(self.pca_maps, grid).cpu().numpy() * np.take(self.body, [voxel[axis]], axis=axis)
        colours = plane_slice(np.moveaxis(frame.view(colours), 0, -1), plane, 0)  # the plane is that one slice
        panels = [Panel(grey_rgb(grey, window), letters=True), Panel(unit_rgb(colours))]
        if similarity is not None:
            values = plane_slice(frame.view(similarity), plane, patient_index[fixed])
            panels.append(Panel(colour_map_rgb(values, *similarity_range)))
        marker = plane_position(patient_index, frame.view(self.image.volume[0]).shape, plane) if marked else None
        return compose(panels, plane, frame.patient_spacing(self.image.spacing), marker)

