"""``vox2vec_nnunet_doctor`` finds what is missing and prints the lines that fix it."""
from __future__ import annotations

from vox2vec_nnunet.commands.doctor import main
from vox2vec_nnunet.nnunet_env import trainers_dir


def test_doctor_prints_the_fixes_then_all_set(tmp_path, monkeypatch, capsys):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 1
    out = capsys.readouterr().out
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        assert f"export {name}=/path/to/{name}" in out
    assert f'export nnUNet_extTrainer="{trainers_dir()}"' in out

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "nnUNetv2_train finds Vox2VecTrainer, Vox2VecPretrainTrainer" in out and "All set." in out


def test_unknown_dataset_is_one_line_naming_the_folders_and_what_is_there(tmp_path, monkeypatch, capsys):
    from vox2vec_nnunet.commands.plan import main as plan

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    (tmp_path / "nnUNet_raw" / "Dataset005_Liver").mkdir()
    assert plan(["-d", "999"]) != 0
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert "'999'" in message and str(tmp_path / "nnUNet_raw") in message and "Dataset005_Liver" in message


def test_nnunet_trainer_search_for_our_trainers_warns_nothing():
    """nnUNetv2_train looks a trainer up by importing every trainer module (nnU-Net's and ours);
    in the processes our commands start, nothing of that puts a warning into every training log,
    and other warnings still show."""
    import os
    import subprocess
    import sys

    from vox2vec_nnunet.nnunet_env import training_env

    script = ("import nnunetv2, os; from nnunetv2.utilities.find_class_by_name import recursive_find_python_class; "
              "from vox2vec_nnunet.nnunet_env import trainers_dir; "
              "assert recursive_find_python_class(os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'), "
              "'Vox2VecTrainer_FineTune', 'nnunetv2.training.nnUNetTrainer') is None; "
              "assert recursive_find_python_class(str(trainers_dir()), 'Vox2VecTrainer_FineTune', "
              "'vox2vec_nnunet_trainers') is not None; "
              "import warnings; warnings.warn('a warning of our own', FutureWarning)")
    env = training_env({**os.environ, "PYTHONWARNINGS": "always"})
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "a warning of our own" in result.stderr, result.stderr
    assert result.stderr.count("Warning") == 1, result.stderr
