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
