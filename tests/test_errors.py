"""Where a Vox2VecError ends up: an ordinary exception for library users, the one line
``error: <message>`` from our commands (exit code 2) and from nnU-Net's (exit code 1)."""
from __future__ import annotations

import inspect
import json
import subprocess

import pytest
import torch

from nnunet_cli import nnunet_env
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.nnunet_env import require_path_variable, trainers_dir
from vox2vec_nnunet.training import acceptance_variants, pretraining, segmentation, unet_finetuning, unet_pretraining
from vox2vec_nnunet.training import variants
from vox2vec_nnunet.training.budgets import LEARNING_RATE_VARIABLE
from vox2vec_nnunet.training.common import NNUNET_ENTRY_POINTS, ExitsOnVox2VecError
from vox2vec_nnunet.training.segmentation import Vox2VecTrainer_LinearProbe
from vox2vec_nnunet.weights import PRETRAINED_WEIGHTS_FILE
from vox2vec_nnunet_plans.builder import SEGMENTATION_CONFIGURATION, build_plans, default_settings

DATASET = "Dataset501_Errors"
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "numTraining": 2,
                "file_ending": ".nii.gz"}


def small_plans() -> dict:
    settings = default_settings(SEGMENTATION_CONFIGURATION).with_overrides(
        patch_size=[8, 16, 16], batch_size=2, base_channels=4, num_levels=3)
    return build_plans(DATASET, "Vox2VecPlans", {SEGMENTATION_CONFIGURATION: settings}, "SimpleITKIO", [0, 1, 2],
                       ["CT"], [2.0, 1.0, 1.0], [20, 40, 40])


def test_library_users_catch_it_as_an_ordinary_exception(monkeypatch):
    assert issubclass(Vox2VecError, Exception) and not issubclass(Vox2VecError, SystemExit)
    monkeypatch.delenv("nnUNet_results", raising=False)
    caught = None
    try:
        require_path_variable("nnUNet_results")
    except Exception as error:  # noqa: BLE001  (what a program using the package writes)
        caught = error
    assert isinstance(caught, Vox2VecError) and caught.message == str(caught)
    assert caught.message.startswith("the environment variable nnUNet_results is not set")


def test_a_command_prints_the_one_line_and_exits_2(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights\n")
    result = subprocess.run(["vox2vec_nnunet_import_weights", str(notes), "-o", str(tmp_path / "out.pth")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {notes}: cannot be loaded as a weights file") and \
        len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def _trainer_classes() -> set[type]:
    modules = (segmentation, pretraining, unet_finetuning, unet_pretraining, variants, acceptance_variants)
    return {c for m in modules for c in vars(m).values()
            if inspect.isclass(c) and hasattr(c, "run_training") and c.__module__ == m.__name__}


def test_every_trainer_ends_nnunets_commands_with_the_one_line():
    """Every method nnU-Net calls of every trainer (defined there, in a mixin or in nnU-Net's
    trainer) converts; nnU-Net still reads the signatures it inspects."""
    classes = _trainer_classes()
    assert len(classes) > 40
    for cls in classes:
        assert issubclass(cls, ExitsOnVox2VecError), cls
        for name in NNUNET_ENTRY_POINTS:
            static = inspect.getattr_static(cls, name)
            function = static.__func__ if isinstance(static, (classmethod, staticmethod)) else static
            assert getattr(function, "exits_on_error", False), (cls, name)
        assert "plans_manager" in inspect.signature(cls.build_network_architecture).parameters
        assert list(inspect.signature(cls.__init__).parameters)[:5] == \
            ["self", "plans", "configuration", "fold", "dataset_json"]


def test_a_trainer_entry_point_exits_with_the_message(tmp_path, monkeypatch):
    """A wrong -pretrained_weights file, checked in ``initialize`` (which nnU-Net calls before
    loading it): SystemExit with the one line; the check itself raises the Vox2VecError."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    data = tmp_path / "nnUNet_preprocessed" / DATASET / f"Vox2VecPlans_{SEGMENTATION_CONFIGURATION}"
    data.mkdir(parents=True)
    (data / "case_000.b2nd").touch()  # nnU-Net's initialize infers the dataset format; no case is read
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights\n")
    monkeypatch.setattr("sys.argv", ["nnUNetv2_train", "501", SEGMENTATION_CONFIGURATION, "0",
                                     "-pretrained_weights", str(notes)])
    trainer = Vox2VecTrainer_LinearProbe(dict(small_plans(), continue_training=False), SEGMENTATION_CONFIGURATION,
                                         0, DATASET_JSON, torch.device("cpu"))
    with pytest.raises(SystemExit) as exited:
        trainer.initialize()
    message = str(exited.value.code)
    assert message.startswith(f"error: {notes}: cannot be loaded as a weights file") and "\n" not in message
    assert message.endswith(f"Expected {PRETRAINED_WEIGHTS_FILE}.")
    assert isinstance(exited.value.__cause__, Vox2VecError)
    with pytest.raises(Vox2VecError):
        trainer._check_pretrained_weights(str(notes))


def test_nnunetv2_train_ends_with_the_one_line(tmp_path):
    """The real ``nnUNetv2_train``: a bad VOX2VEC_LEARNING_RATE refused in the trainer's
    constructor ends the command with exit code 1 and the message, no traceback."""
    env = nnunet_env(tmp_path)
    folder = tmp_path / "nnUNet_preprocessed" / DATASET
    folder.mkdir()
    (folder / "Vox2VecPlans.json").write_text(json.dumps(small_plans()))
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    env[LEARNING_RATE_VARIABLE] = "fast"
    env["nnUNet_extTrainer"] = str(trainers_dir())
    result = subprocess.run(["nnUNetv2_train", DATASET, SEGMENTATION_CONFIGURATION, "0", "-p", "Vox2VecPlans",
                             "-tr", "Vox2VecTrainer_LinearProbe", "-device", "cpu"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {LEARNING_RATE_VARIABLE}='fast' is not a positive learning rate (e.g. {LEARNING_RATE_VARIABLE}=3e-4)"
    assert "Traceback" not in result.stderr
