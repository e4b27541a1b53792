"""Pictures of the voxel representations: ``vox2vec_nnunet_embed`` (paper Sect. 3.2, Fig. 1 right)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from PIL import Image

from vox2vec_nnunet.commands.embed import SUMMARY_FILE, main
from vox2vec_nnunet.embedding import (PANEL_GAP, DisplayFrame, PcaColours, array_axis_directions, best_match,
                                      cosine_similarity_map, full_grid, load_fpn, query_representation)
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.network.fpn import FPN3d, dense_representations, voxel_representations
from vox2vec_nnunet.network.segmentation import Vox2VecSegmentationNetwork
from vox2vec_nnunet.phantoms import PhantomConfig, make_phantom

from mr_volumes import SPACING as SPACING_MR_VOLUMES
from mr_volumes import mr_volume

PHANTOM = PhantomConfig(spacing=(10.0, 5.0, 5.0))  # (z, y, x) mm: a coarse, fast phantom
SPACING = (10.0, 5.0, 5.0)  # preprocessing spacing, slice axis first
QUERY = (9, 30, 20)  # a body voxel of the preprocessed phantom (array order)


def write_image(path: Path, array_kji: np.ndarray, spacing_ijk: tuple[float, float, float],
                direction: np.ndarray = np.eye(3)) -> Path:
    """Write ``array_kji`` (SimpleITK's array order) with the given index-axis directions
    (columns, LPS), centred on the world origin."""
    image = sitk.GetImageFromArray(array_kji)
    size = np.array(array_kji.shape[::-1], dtype=float)
    image.SetSpacing(tuple(float(s) for s in spacing_ijk))
    image.SetDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    image.SetOrigin(tuple(-np.asarray(direction) @ ((size - 1) / 2 * np.asarray(spacing_ijk))))
    sitk.WriteImage(image, str(path), True)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """(rows, columns) of a PNG."""
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory) -> Path:
    phantom = make_phantom(5, PHANTOM)
    return write_image(tmp_path_factory.mktemp("images") / "phantom.nii.gz",
                       np.rint(phantom.image).astype(np.int16), PHANTOM.spacing[::-1])


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A small random FPN saved like a pre-training checkpoint (backbone.* and projector.*)."""
    torch.manual_seed(0)
    state = {f"backbone.{k}": v for k, v in FPN3d(1, base_channels=4, num_levels=3).state_dict().items()}
    state["projector.layers.0.weight"] = torch.randn(8, 28)
    path = tmp_path_factory.mktemp("weights") / "checkpoint_final.pth"
    torch.save({"network_weights": state, "current_epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def embedded_run(phantom_file, weights, tmp_path_factory):
    """One run with a query voxel, an identical copy as target, and saved features."""
    copy = shutil.copy(phantom_file, tmp_path_factory.mktemp("copy") / "copy.nii.gz")
    out = tmp_path_factory.mktemp("out")
    argv = ["-i", phantom_file, "-w", weights, "-o", out, "--spacing", *SPACING, "--voxel", *QUERY,
            "--target", copy, "--save_features", "-device", "cpu"]
    stdout = io.StringIO()  # capsys is function-scoped; a module fixture captures by hand
    with contextlib.redirect_stdout(stdout):
        code = main([str(a) for a in argv])
    return code, out, stdout.getvalue(), json.loads((out / SUMMARY_FILE).read_text())


# ----------------------------------------------------------------------------- the command


def test_pictures_have_the_shape_and_physical_aspect_of_the_preprocessed_image(embedded_run):
    code, out, stdout, summary = embedded_run
    assert code == 0
    shape = compute_new_shape(PHANTOM.shape, PHANTOM.spacing, SPACING)  # nnU-Net's resampling
    assert summary["preprocessed_shape"] == list(shape)
    z, y, x = shape
    pixel_mm = min(SPACING)
    planes = {"axial": (y * SPACING[1], x * SPACING[2]), "coronal": (z * SPACING[0], x * SPACING[2]),
              "sagittal": (z * SPACING[0], y * SPACING[1])}
    for plane, (rows_mm, columns_mm) in planes.items():
        rows, columns = round(rows_mm / pixel_mm), round(columns_mm / pixel_mm)
        assert png_size(out / f"phantom_{plane}.png") == (rows, 2 * columns + PANEL_GAP)
        voxel_png = out / f"phantom_voxel_{'_'.join(map(str, QUERY))}_{plane}.png"
        match_png = out / f"copy_match_{'_'.join(map(str, QUERY))}_{plane}.png"
        for path in (voxel_png, match_png):
            assert png_size(path) == (rows, 3 * columns + 2 * PANEL_GAP)
            assert f"wrote {path}" in stdout
    # the slice axis is 10 mm, the in-plane axes 5 mm: the coronal picture is twice as tall as its slice count
    assert png_size(out / "phantom_coronal.png")[0] == 2 * z


def test_best_match_in_an_identical_copy_is_the_query_voxel(embedded_run):
    _, _, stdout, summary = embedded_run
    assert summary["target"]["best_match"] == list(QUERY)
    assert summary["target"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert f"voxel {list(QUERY)}" in stdout and "cosine similarity 1.0000" in stdout


def test_saved_features_are_the_dense_representation_of_the_preprocessed_image(embedded_run, weights):
    _, out, _, summary = embedded_run
    with np.load(out / "phantom_features.npz") as saved:
        representation, image = saved["representation"], saved["image"]
        assert list(saved["spacing"]) == list(SPACING)
    assert representation.shape == (28, *summary["preprocessed_shape"])
    fpn = FPN3d(1, 4, 3)
    state = torch.load(weights, weights_only=True)["network_weights"]
    fpn.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    with torch.no_grad():
        dense = dense_representations(fpn.eval()(torch.from_numpy(image)[None]))[0].numpy()
    np.testing.assert_allclose(representation, dense, rtol=1e-5, atol=1e-5)


def marker_volume(world_zyx: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Soft tissue (40 HU) plus bright slabs on the patient's right (+300), front (+600) and top (+1200).

    ``world_zyx`` are LPS coordinates (mm) of every voxel: x = left, y = posterior, z = superior.
    """
    z, y, x = world_zyx
    return (40 + 300 * (x < -20) + 600 * (y < -20) + 1200 * (z > 20)).astype(np.int16)


def marker_image(path: Path, direction: np.ndarray, spacing_ijk: tuple[float, float, float],
                 size_ijk: tuple[int, int, int]) -> Path:
    """The marker volume sampled on a grid with the given index-axis directions (columns, LPS)."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in size_ijk[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float)
    centred = (index - (np.asarray(size_ijk) - 1) / 2) * np.asarray(spacing_ijk)
    world = centred @ np.asarray(direction).T  # rows: (x, y, z) LPS of each voxel
    return write_image(path, marker_volume((world[..., 2], world[..., 1], world[..., 0])), spacing_ijk, direction)


# Index axes (i, j, k) as LPS columns. "sagittal stack": i runs posterior, j inferior, k to the
# patient's right, and k (8 mm) is the slice axis, so nnU-Net puts the file's x axis first.
DIRECTIONS = {
    "identity (LPS)": (np.eye(3), (4.0, 4.0, 8.0), (40, 30, 16)),
    "sagittal stack": (np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]]), (4.0, 4.0, 8.0), (30, 32, 20)),
}


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_pictures_are_in_radiological_orientation_whatever_the_file_direction(name, weights, tmp_path, capsys):
    direction, spacing, size = DIRECTIONS[name]
    image = marker_image(tmp_path / "markers.nii.gz", direction, spacing, size)
    code, out, err = run(["-i", image, "-w", weights, "-o", tmp_path / "out", "--spacing", 8, 4, 4,
                          "--display_window", -100, 2200, "-device", "cpu"], capsys)
    assert code == 0, err

    def grey(plane: str) -> np.ndarray:
        rgb = np.asarray(Image.open(tmp_path / "out" / f"markers_{plane}.png"))
        return rgb[:, : (rgb.shape[1] - PANEL_GAP) // 2, 0].astype(float)  # the image panel

    def brighter(a: np.ndarray, b: np.ndarray) -> bool:
        return np.median(a) > np.median(b) + 20

    def halves(picture: np.ndarray) -> dict[str, np.ndarray]:
        rows, columns = picture.shape
        return {"left": picture[:, : columns // 4], "right": picture[:, -columns // 4:],
                "top": picture[: rows // 4], "bottom": picture[-rows // 4:]}

    axial, coronal, sagittal = (halves(grey(p)) for p in ("axial", "coronal", "sagittal"))
    assert brighter(axial["left"], axial["right"])  # patient right on the image's left
    assert brighter(axial["top"], axial["bottom"])  # anterior up
    assert brighter(coronal["left"], coronal["right"])  # patient right on the left
    assert brighter(coronal["top"], coronal["bottom"])  # superior up
    assert brighter(sagittal["left"], sagittal["right"])  # anterior on the left
    assert brighter(sagittal["top"], sagittal["bottom"])  # superior up
    # aspect: every picture spans the same 4 mm pixels, whatever axis was the 8 mm slice axis
    fov_mm = {"S": 128.0, "P": 120.0, "L": 160.0}
    for plane, (rows, columns) in {"axial": ("P", "L"), "coronal": ("S", "L"), "sagittal": ("S", "P")}.items():
        assert grey(plane).shape == (fov_mm[rows] / 4, fov_mm[columns] / 4)
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    if name == "sagittal stack":
        assert summary["axes"][0] == "axis 0: left -> right"  # the slice axis comes first


def test_clear_errors_for_bad_inputs(phantom_file, weights, tmp_path, capsys):
    base = ["-i", phantom_file, "-w", weights, "-o", tmp_path / "out", "--spacing", *SPACING, "-device", "cpu"]

    code, _, err = run(["-i", tmp_path / "missing.nii.gz", *base[2:]], capsys)
    assert code == 2 and "missing.nii.gz: no such file" in err

    no_backbone = tmp_path / "head_only.pth"
    torch.save({"network_weights": {"head.conv.weight": torch.zeros(3, 16, 1, 1, 1)}}, no_backbone)
    code, _, err = run([*base[:2], "-w", no_backbone, *base[4:]], capsys)
    assert code == 2 and "holds no vox2vec FPN backbone" in err

    code, _, err = run([*base, "--voxel", 0, 999, 0], capsys)
    assert code == 2 and "outside the preprocessed image" in err and "phantom.nii.gz" in err

    code, _, err = run([*base, "--save_features", "--max_features_gb", 1e-6], capsys)
    assert code == 2 and "--max_features_gb" in err and "smaller region" in err

    with pytest.raises(SystemExit):
        main([str(a) for a in [*base, "--target", phantom_file]])
    assert "--target needs --voxel" in capsys.readouterr().err

    if not torch.cuda.is_available():
        code, _, err = run([*base[:-2], "-device", "cuda"], capsys)
        assert code == 2 and "no CUDA device" in err
    assert not (tmp_path / "out").exists()  # nothing written by a failed run


# ----------------------------------------------------------------------------- MR and several channels

MR_CHANNELS = {"0": "T2", "1": "T1"}
MR_SPACING = (4.0, 3.0, 3.0)
MR_QUERY = (5, 10, 12)  # a body voxel of the preprocessed MR (array order)


def fpn_weights(path: Path, in_channels: int, channel_names: dict[str, str] | None) -> Path:
    """A small random FPN saved like a pre-training checkpoint, with or without its channel record."""
    torch.manual_seed(0)
    state = {f"backbone.{k}": v for k, v in FPN3d(in_channels, base_channels=4, num_levels=3).state_dict().items()}
    checkpoint = {"network_weights": state, "current_epoch": 1}
    if channel_names is not None:
        checkpoint["vox2vec"] = {"channel_names": channel_names}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def mr_files(tmp_path_factory) -> tuple[Path, Path]:
    """A two-channel MR (T2, T1) as nnU-Net stores it, one file per channel."""
    folder = tmp_path_factory.mktemp("mr")
    spacing_ijk = SPACING_MR_VOLUMES[::-1]
    t2, _, _ = mr_volume((10, 40, 48), seed=3, contrast="T2", scale=350.0)
    t1, _, _ = mr_volume((10, 40, 48), seed=3, contrast="T1", scale=1200.0)
    return (write_image(folder / "case_0000.nii.gz", t2, spacing_ijk),
            write_image(folder / "case_0001.nii.gz", t1, spacing_ijk))


@pytest.fixture(scope="module")
def mr_run(mr_files, tmp_path_factory):
    """A 2-channel FPN that records its channels, on the MR, with a query voxel, a copy as target and features."""
    weights = fpn_weights(tmp_path_factory.mktemp("mr_weights") / "checkpoint_final.pth", 2, MR_CHANNELS)
    folder = tmp_path_factory.mktemp("mr_copy")
    copies = [shutil.copy(f, folder / f"copy_{i:04d}.nii.gz") for i, f in enumerate(mr_files)]
    out = tmp_path_factory.mktemp("mr_out")
    argv = ["-i", *mr_files, "-w", weights, "-o", out, "--spacing", *MR_SPACING, "--voxel", *MR_QUERY,
            "--target", *copies, "--save_features", "-device", "cpu"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([str(a) for a in argv])
    return code, out, stdout.getvalue(), json.loads((out / SUMMARY_FILE).read_text()), weights


def test_a_two_channel_mr_is_embedded_with_each_channel_z_scored(mr_run, mr_files):
    code, out, stdout, summary, weights = mr_run
    assert code == 0
    assert summary["image"] == [str(f) for f in mr_files]
    assert summary["channels"] == {"channel_names": ["T2", "T1"], "normalization_schemes": ["ZScoreNormalization"] * 2,
                                   "use_mask_for_norm": [False, False], "named_by": "recorded in the weights file"}
    assert "0 'T2' -> ZScoreNormalization, 1 'T1' -> ZScoreNormalization" in stdout
    shape = compute_new_shape((10, 40, 48), SPACING_MR_VOLUMES, MR_SPACING)
    assert summary["preprocessed_shape"][0] == shape[0]  # nnU-Net's crop to the nonzero region takes the padding
    with np.load(out / "case_0000_features.npz") as saved:
        image, representation = saved["image"], saved["representation"]
        assert list(saved["channel_names"]) == ["T2", "T1"]
    assert image.shape == (2, *summary["preprocessed_shape"]) and representation.shape[1:] == image.shape[1:]
    flat = image.reshape(2, -1)
    assert np.abs(flat.mean(1)).max() < 0.05 and np.abs(flat.std(1) - 1).max() < 0.1  # z-scored, not 0..1200
    fpn = FPN3d(2, 4, 3)
    state = torch.load(weights, weights_only=True)["network_weights"]
    fpn.load_state_dict({k[len("backbone."):]: v for k, v in state.items()})
    with torch.no_grad():
        dense = dense_representations(fpn.eval()(torch.from_numpy(image)[None]))[0].numpy()
    np.testing.assert_allclose(representation, dense, rtol=1e-5, atol=1e-5)
    assert summary["target"]["best_match"] == list(MR_QUERY)
    assert summary["target"]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_the_grey_panels_show_the_first_channel_between_its_percentiles(mr_run):
    _, out, _, summary, _ = mr_run
    low, high = summary["display_window"]
    assert -3 < low < 0 < high < 5  # z-scored units, not the CT window (-160, 240)
    with np.load(out / "case_0000_features.npz") as saved:
        first = saved["image"][0]
    axial = np.asarray(Image.open(out / "case_0000_axial.png"))
    panel = axial[:, : (axial.shape[1] - PANEL_GAP) // 2]
    grey, drawn = panel[..., 0], panel[..., 0] != panel[..., 2]  # the orientation letters are yellow
    # the middle axial slice of the first channel under the window (the file's axes are LPS: no flip)
    expected = np.floor(np.clip((first[first.shape[0] // 2] - low) / (high - low), 0, 1) * 255 + 0.5)
    assert grey.shape == expected.shape  # in-plane voxels at the finest spacing: 1 px each
    assert drawn.mean() < 0.3 and np.abs(grey.astype(float) - expected)[~drawn].max() <= 1
    assert (grey == 0).mean() < 0.5 and (grey == 255).mean() < 0.5  # neither black nor saturated


def test_channel_names_from_the_option_and_clear_errors_for_mismatched_channels(mr_files, phantom_file, weights,
                                                                                tmp_path, capsys):
    unnamed = fpn_weights(tmp_path / "unnamed.pth", 2, None)
    base = ["-o", tmp_path / "out", "--spacing", *MR_SPACING, "-device", "cpu"]

    code, _, err = run(["-i", *mr_files, "-w", unnamed, *base], capsys)
    assert code == 2 and "records no channel names" in err and "--channel_names" in err and "unnamed.pth" in err

    code, _, err = run(["-i", *mr_files, "-w", unnamed, "--channel_names", "T2", *base], capsys)
    assert code == 2 and "1 name(s)" in err and "takes 2 input channel(s)" in err

    code, _, err = run(["-i", mr_files[0], "-w", unnamed, "--channel_names", "T2", "T1", *base], capsys)
    assert code == 2 and str(mr_files[0]) in err and "1 channel(s)" in err
    assert "takes 2 input channel(s) (['T2', 'T1'])" in err and "pass 2 file(s)" in err and "<T2> <T1>" in err

    code, _, err = run(["-i", *mr_files, "-w", weights, *base], capsys)  # a CT FPN, two files
    assert code == 2 and "2 channel(s)" in err and "takes 1 input channel(s) (['CT'])" in err

    other = write_image(tmp_path / "case_0001.nii.gz", np.ones((10, 40, 44), np.float32), SPACING_MR_VOLUMES[::-1])
    code, _, err = run(["-i", mr_files[0], other, "-w", unnamed, "--channel_names", "T2", "T1", *base], capsys)
    assert code == 2 and "channels of different shapes" in err
    assert f"{mr_files[0]}: shape [10, 40, 48]" in err and f"{other}: shape [10, 40, 44]" in err
    assert not (tmp_path / "out").exists()

    code, out, err = run(["-i", *mr_files, "-w", unnamed, "--channel_names", "T2", "T1", *base], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["channels"]["named_by"] == "--channel_names"
    assert summary["channels"]["normalization_schemes"] == ["ZScoreNormalization"] * 2


def test_a_single_channel_fpn_without_a_record_embeds_ct(embedded_run):
    _, _, stdout, summary = embedded_run
    assert summary["channels"] == {"channel_names": ["CT"], "normalization_schemes": ["CTNormalization"],
                                   "use_mask_for_norm": [False], "named_by": "default: a single-channel FPN embeds CT"}
    assert summary["display_window"] == [-160.0, 240.0]


# ----------------------------------------------------------------------------- the computations


def test_weights_of_every_kind_give_the_same_fpn(tmp_path):
    torch.manual_seed(0)
    network = Vox2VecSegmentationNetwork(input_channels=1, num_classes=3, head="nonlinear", base_channels=4,
                                         num_levels=3)
    plain = network.backbone.state_dict()
    logging = {"ema_fg_dice": [np.float32(0.5), np.float64(0.6)], "epoch_end_timestamps": [np.int64(3)]}
    files = {"segmentation checkpoint, as nnU-Net writes it (numpy scalars in its log)":
             {"network_weights": network.state_dict(), "trainer_name": "x", "logging": logging,
              "_best_ema": np.float32(0.6)},
             "released plain FPN": plain}
    for name, content in files.items():
        torch.save(content, tmp_path / "weights.pth")
        fpn, channels = load_fpn(tmp_path / "weights.pth")
        assert channels is None, name
        assert (fpn.base_channels, fpn.num_levels, fpn.training) == (4, 3, False), name
        assert all(torch.equal(fpn.state_dict()[k], v) for k, v in plain.items()), name
    torch.save({"network_weights": network.state_dict(), "logging": np.array([print], dtype=object)},
               tmp_path / "objects.pth")
    with pytest.raises(Vox2VecError, match="the file is refused"):  # numbers are allowed, not numpy objects
        load_fpn(tmp_path / "objects.pth")


@pytest.fixture(scope="module")
def small_pyramid() -> list[torch.Tensor]:
    """Sizes that are not multiples of the pooling, so the coarse levels' cells are partial."""
    torch.manual_seed(1)
    fpn = FPN3d(1, base_channels=3, num_levels=4).eval()
    with torch.no_grad():
        return fpn(torch.rand(1, 1, 9, 14, 11))


def test_levelwise_similarity_equals_the_dense_computation(small_pyramid):
    dense = dense_representations(small_pyramid)[0]  # (C, Z, Y, X)
    for voxel in [(0, 0, 0), (4, 7, 5), (8, 13, 10)]:
        query = query_representation(small_pyramid, voxel)
        expected = torch.nn.functional.cosine_similarity(dense, query[:, None, None, None], dim=0)
        similarity = cosine_similarity_map(query, small_pyramid)
        torch.testing.assert_close(similarity, expected, rtol=1e-5, atol=1e-5)
        assert similarity[voxel] == pytest.approx(1.0, abs=1e-6)
        assert best_match(similarity) == (voxel, pytest.approx(1.0, abs=1e-6))


def test_pca_colours_are_in_the_unit_cube_and_project_the_representations(small_pyramid):
    body = np.zeros((9, 14, 11), dtype=bool)
    body[2:8, 3:12, 2:10] = True
    pca = PcaColours.fit(small_pyramid, body, num_samples=200)
    colours = pca.colours(pca.level_maps(small_pyramid), full_grid((9, 14, 11), torch.device("cpu")))
    assert colours.shape == (3, 9, 14, 11)
    assert colours.min() >= 0 and colours.max() <= 1
    assert all(colours[c][torch.from_numpy(body)].std() > 0.1 for c in range(3))  # the colours vary
    positions = torch.tensor([[0, 2, 3, 2], [0, 7, 11, 9], [0, 5, 8, 4], [0, 0, 0, 0]])
    reps = voxel_representations(small_pyramid, positions)
    expected = (((reps - pca.mean) @ pca.components - pca.low) / (pca.high - pca.low)).clamp(0, 1)
    torch.testing.assert_close(colours[:, positions[:, 1], positions[:, 2], positions[:, 3]].T, expected,
                               rtol=1e-4, atol=1e-4)


def test_reader_directions_give_the_patient_frame():
    identity_sitk = {"sitk_stuff": {"direction": tuple(np.eye(3).ravel())}}
    ras_nibabel = {"nibabel_stuff": {"original_affine": np.diag([-2.0, -3.0, 4.0, 1.0])}}  # RAS of LPS axes
    for properties in (identity_sitk, ras_nibabel):
        # reader arrays are (k, j, i): axis 0 runs superior (z), axis 2 left (x)
        np.testing.assert_allclose(array_axis_directions(properties), np.eye(3)[::-1], atol=1e-12)
    frame = DisplayFrame.from_directions(np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, 1.0, 0]]))
    assert frame.permutation == (0, 2, 1) and frame.flipped == (True, False, True)
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    patient = frame.view(volume)
    assert patient.shape == (4, 6, 5)
    assert patient[0, 0, 0] == volume[3, 4, 0]  # the most inferior, anterior, right voxel
    for index in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        moved = frame.to_patient(index, volume.shape)
        assert patient[moved] == volume[index]
        assert frame.to_array(moved, volume.shape) == index
    with pytest.raises(ValueError, match="oblique"):
        DisplayFrame.from_directions(np.array([[0.7, 0.7, 0], [0.7, 0.7, 0], [0, 0, 1.0]]))
