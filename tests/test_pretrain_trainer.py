"""Vox2VecPretrainTrainer in-process: the CUDA-path settings on the CPU, seeds, snapshots, checkpoints,
the distributed set-up (torchrun in one process, the CUDA choices, a world size that does not divide n)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import pin_memory_of_all_eligible_items_in_dict
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from torch.nn.parallel import DistributedDataParallel

from pretraining_cases import write_dataset
from vox2vec_nnunet.distributed import (backend_for, ddp_device_ids, init_process_group_from_torchrun,
                                        launched_by_torchrun, process_device)
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.network.global_batchnorm import GlobalBatchNorm
from vox2vec_nnunet.network.segmentation import Vox2VecSegmentationNetwork
from vox2vec_nnunet.pretraining.augmentation import IntensityAugmentation
from vox2vec_nnunet.training import pretraining
from vox2vec_nnunet.training.pretraining import AugmentInWorkers, Vox2VecPretrainTrainer
from vox2vec_nnunet_plans.builder import PRETRAINING_CONFIGURATION, build_plans, default_settings

PATCH = (8, 16, 16)
SHAPES = [(10, 36, 40), (12, 40, 44), (6, 32, 36)]  # the last is shorter than the patch along z
DATASET = "Dataset900_Pretraining"
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "body": 1}, "numTraining": len(SHAPES),
                "file_ending": ".nii.gz"}


class _Small(Vox2VecPretrainTrainer):
    num_volumes = 2
    num_positions = 32


class _Seeded(_Small):
    seed = 3


class _CudaPathOnTheCpu(_Seeded):
    augment_on_device = True
    backbone_autocast = True


@pytest.fixture
def make_trainer(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    folder = tmp_path / "nnUNet_preprocessed" / DATASET / f"Vox2VecPlans_{PRETRAINING_CONFIGURATION}"
    folder.mkdir(parents=True)
    write_dataset(folder, SHAPES, PATCH, body_voxels_property=True)
    settings = default_settings(PRETRAINING_CONFIGURATION).with_overrides(
        patch_size=PATCH, base_channels=2, num_levels=3)

    def make(cls: type[Vox2VecPretrainTrainer]) -> Vox2VecPretrainTrainer:
        plans = build_plans(DATASET, "Vox2VecPlans", {PRETRAINING_CONFIGURATION: settings}, "SimpleITKIO",
                            [0, 1, 2], ["CT"], [2.0, 1.0, 1.0], [10, 36, 40])
        plans["continue_training"] = False
        trainer = cls(plans, PRETRAINING_CONFIGURATION, "all", DATASET_JSON, torch.device("cpu"))
        trainer.num_iterations_per_epoch = 2
        return trainer

    return make


def _weights(trainer: Vox2VecPretrainTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}


def _run(trainer: Vox2VecPretrainTrainer, steps: int) -> list[float]:
    trainer.initialize()
    batches, _ = trainer.get_dataloaders()
    return [trainer.train_step(next(batches))["loss"] for _ in range(steps)]


def test_training_step_with_the_cuda_path_settings_on_the_cpu(make_trainer):
    """Augmentation inside the step on the training device and a bfloat16 backbone, as on
    CUDA, run on the CPU: the loss is finite, every part learns, autocast is really active,
    and projector and loss stay float32."""
    trainer = make_trainer(_CudaPathOnTheCpu)
    trainer.initialize()
    batches, _ = trainer.get_dataloaders()
    assert isinstance(batches, SingleThreadedAugmenter) and batches.transform is None  # nothing in the workers
    calls = []

    class RecordingAugmentation(IntensityAugmentation):
        def __call__(self, patches, seeds):
            calls.append((patches.device, torch.as_tensor(seeds).clone()))
            return super().__call__(patches, seeds)

    trainer.augmentation = RecordingAugmentation()
    dtypes = {}

    def record(name):
        def hook(module, inputs, output) -> None:
            dtypes[f"{name}_in"], dtypes[f"{name}_out"] = inputs[0].dtype, (output[0] if name == "backbone" else
                                                                             output).dtype
        return hook

    trainer.network.backbone.register_forward_hook(record("backbone"))
    trainer.network.projector.register_forward_hook(record("projector"))
    before = _weights(trainer)
    batch = next(batches)
    assert "augmented" not in batch and batch["patches1"].min() < -500  # still HU
    result = trainer.train_step(batch)
    assert np.isfinite(result["loss"]) and result["loss"] > 0
    assert dtypes == {"backbone_in": torch.float32, "backbone_out": torch.bfloat16,
                      "projector_in": torch.float32, "projector_out": torch.float32}
    seeds = batch["augmentation_seeds"]
    assert len(calls) == 1 and calls[0][0] == torch.device("cpu")
    assert torch.equal(calls[0][1], torch.cat([seeds[:, 0], seeds[:, 1]]))
    after = trainer.network.state_dict()
    for prefix in ("backbone.", "projector."):
        changed = [k for k, v in before.items() if k.startswith(prefix) and v.is_floating_point()
                   and not torch.equal(v, after[k])]
        assert changed, f"no {prefix} weight changed"
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())


def test_default_settings_on_the_cpu(make_trainer, monkeypatch):
    """seed None: drawn and logged; the CPU workers augment; no autocast; with workers the
    ordered augmenter, without pinned memory on the CPU."""
    monkeypatch.setenv("nnUNet_n_proc_DA", "2")
    trainer = make_trainer(_Small)
    trainer.initialize()
    batches, _ = trainer.get_dataloaders()
    assert isinstance(trainer.run_seed, int) and 0 <= trainer.run_seed < 2 ** 63
    log = open(trainer.log_file).read()
    assert f"vox2vec pre-training seed: {trainer.run_seed} (drawn from OS entropy" in log
    assert trainer.network.backbone_autocast is False
    assert type(batches) is MultiThreadedAugmenter and isinstance(batches.transform, AugmentInWorkers)
    assert batches.num_processes == 2 and batches.generator.number_of_threads_in_multithreaded == 2
    assert batches.pin_memory is False  # torch 2.14 without an accelerator cannot pin memory


def test_batches_can_be_pinned_for_cuda(make_trainer, monkeypatch):
    """The CPU twin of pinning: batchgenerators' pinning (used with CUDA) reaches every tensor
    of a batch and keeps the rest. (Tensor.pin_memory itself needs an accelerator in torch
    2.14: without one it raises, so the twin records the calls instead.)"""
    trainer = make_trainer(_Seeded)
    trainer.initialize()
    batch = next(trainer.get_dataloaders()[0])
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pinned.append(t.data_ptr()) or t)
    result = pin_memory_of_all_eligible_items_in_dict(dict(batch))
    assert sorted(pinned) == sorted(v.data_ptr() for v in batch.values() if isinstance(v, torch.Tensor))
    assert result["keys"] == batch["keys"] and result["iteration"] == batch["iteration"]


def test_the_same_seed_gives_the_same_steps(make_trainer):
    first, second, other = make_trainer(_Seeded), make_trainer(_Seeded), make_trainer(_Small)
    other.seed = 4
    losses = [_run(t, 2) for t in (first, second, other)]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    a, b, c = (t.network.state_dict() for t in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_and_snapshot_record_the_seed(make_trainer, tmp_path):
    trainer = make_trainer(_Seeded)
    _run(trainer, 2)
    trainer.current_epoch = 1  # as after the second epoch's on_epoch_end: 2 epochs x 2 iterations done
    trainer.save_snapshot()
    snapshot_file = tmp_path / "nnUNet_results" / DATASET / \
        f"_Seeded__Vox2VecPlans__{PRETRAINING_CONFIGURATION}" / "fold_all" / "snapshots" / "checkpoint_iter_0000004.pth"
    snapshot = torch.load(snapshot_file, map_location="cpu", weights_only=True)
    assert snapshot["vox2vec"] == {"seed": 3, "iteration": 4, "epoch": 2, "channel_names": {"0": "CT"}}
    network = Vox2VecSegmentationNetwork(1, 3, base_channels=2, num_levels=3)
    load_pretrained_weights(network, str(snapshot_file))  # what nnUNetv2_train -pretrained_weights does
    weights = trainer.network.state_dict()
    assert all(torch.equal(v, weights[f"backbone.{k}"]) for k, v in network.backbone.state_dict().items())

    checkpoint_file = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(checkpoint_file)
    resumed = make_trainer(_Small)  # seed None: the checkpoint's seed wins
    resumed.load_checkpoint(checkpoint_file)  # nnU-Net's load_checkpoint ignores the extra key
    assert resumed.run_seed == 3 and resumed.current_epoch == 2
    assert all(torch.equal(v, weights[k]) for k, v in resumed.network.state_dict().items())
    batches, _ = resumed.get_dataloaders()
    assert next(batches)["iteration"] == 4  # --c continues the stream


def test_case_with_too_few_body_voxels_stops_with_a_clear_error(make_trainer):
    trainer = make_trainer(_Seeded)
    trainer.num_positions = 10 ** 6
    trainer.initialize()
    with pytest.raises(Vox2VecError, match=r"'case_000' .* has \d+ body voxels, fewer than the m = 1000000"):
        trainer.get_dataloaders()


def test_seeded_variants_are_found_by_nnunets_trainer_search(monkeypatch):
    """``-tr Vox2VecPretrainTrainer_Demo_Seed1`` resolves through nnU-Net's own search of the
    nnUNet_extTrainer folder: the demo budget with seed 1, one class (pickle finds it where it
    is defined); a seed without a variant is not found."""
    import pickle

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from vox2vec_nnunet.nnunet_env import trainers_dir
    from vox2vec_nnunet.training.budgets import PRETRAINING_DEMO, PRETRAINING_DEMO_LONG
    from vox2vec_nnunet.training.variants import SEEDS, Vox2VecPretrainTrainer_Demo, seeded_name, unseeded_name

    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    for base, budget in (("Vox2VecPretrainTrainer_Demo", PRETRAINING_DEMO),
                         ("Vox2VecPretrainTrainer_DemoLong", PRETRAINING_DEMO_LONG)):
        for seed in SEEDS:
            found = recursive_find_trainer_class_by_name(seeded_name(base, seed))
            assert found.__name__ == f"{base}_Seed{seed}" and found.seed == seed and found.budget is budget
            assert unseeded_name(found.__name__) == base and pickle.loads(pickle.dumps(found)) is found
    assert Vox2VecPretrainTrainer_Demo.seed is None and PRETRAINING_DEMO.total_iterations == 300
    with pytest.raises(RuntimeError, match="Could not find requested nnunet trainer"):
        recursive_find_trainer_class_by_name("Vox2VecPretrainTrainer_Demo_Seed7")


def test_the_cuda_choices_of_a_distributed_run() -> None:
    """CPU twins of the CUDA-only branches: nccl, the GPU of the machine, DDP's device_ids."""
    assert backend_for(torch.device("cuda", 0)) == "nccl" and backend_for(torch.device("cpu")) == "gloo"
    assert process_device(torch.device("cuda"), 3) == torch.device("cuda", 3)
    assert process_device(torch.device("cpu"), 3) == torch.device("cpu")
    assert ddp_device_ids(torch.device("cuda", 1)) == [1] and ddp_device_ids(torch.device("cpu")) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_a_torchrun_process_wraps_ddp_with_global_batchnorm(make_trainer, monkeypatch):
    """The torchrun path in one process (world size 1, gloo): the trainer joins the group,
    wraps the network in DDP with GlobalBatchNorm around the optimiser's parameters, trains,
    writes its checkpoint as rank 0 and ends the group."""
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost",
                        "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)
    trainer = make_trainer(_Seeded)
    try:
        assert trainer.is_ddp and trainer.local_rank == 0 and trainer.device == torch.device("cpu")
        assert dist.get_backend() == "gloo" and trainer.grad_scaler is None
        trainer.initialize()
        assert isinstance(trainer.network, DistributedDataParallel) and trainer.network.device_ids is None
        norms = [m for m in trainer.network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(isinstance(m, GlobalBatchNorm) for m in norms)
        optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        assert optimised == {id(p) for p in trainer.network.parameters()}
        before = {k: v.clone() for k, v in trainer.network.module.state_dict().items()}
        batches, _ = trainer.get_dataloaders()
        assert np.isfinite(trainer.train_step(next(batches))["loss"])
        assert any(not torch.equal(v, before[k]) for k, v in trainer.network.module.state_dict().items())
        trainer.dataloader_train = trainer.dataloader_val = None
        trainer.on_train_end()
        final = torch.load(f"{trainer.output_folder}/checkpoint_final.pth", map_location="cpu", weights_only=True)
        assert not any(k.startswith("module.") for k in final["network_weights"])
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_world_size_that_does_not_divide_n_is_refused(make_trainer, monkeypatch):
    trainer = make_trainer(_Small)  # n = 2
    monkeypatch.setattr(pretraining, "distributed_active", lambda: True)
    monkeypatch.setattr(pretraining.dist, "get_world_size", lambda: 3)
    with pytest.raises(Vox2VecError, match=r"num_volumes=2 .* a world size of 3 processes"):
        trainer._set_batch_size_and_oversample()


def test_torchrun_variables_missing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert launched_by_torchrun()
    with pytest.raises(Vox2VecError, match="RANK, MASTER_ADDR, MASTER_PORT are not"):
        init_process_group_from_torchrun(torch.device("cpu"))


def test_a_torchrun_gpu_process_joins_with_nccl_on_its_machines_gpu(monkeypatch):
    """The CUDA branch of joining torchrun's group, on the CPU: the GPU is chosen by LOCAL_RANK
    (not the global rank) and the group uses nccl (set_device and the group are recorded)."""
    for name, value in {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node0",
                        "MASTER_PORT": "29400"}.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: calls.append((backend, kwargs)))
    assert init_process_group_from_torchrun(torch.device("cuda")) == torch.device("cuda", 1)
    assert calls == [("set_device", torch.device("cuda", 1)),
                     ("nccl", {"init_method": "env://", "rank": 5, "world_size": 8})]


def test_ranks_resuming_from_different_points_are_stopped(make_trainer, monkeypatch):
    """With --c, a machine that does not see the checkpoint would start afresh while the others
    resume: every rank stops with the same message instead."""
    trainer = make_trainer(_Small)
    trainer._resumed_from = {"epoch": 2, "seed": 3}
    monkeypatch.setattr(pretraining.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(pretraining.dist, "all_gather_object",
                        lambda records, record: records.__setitem__(slice(None), [record, None]))
    with pytest.raises(Vox2VecError, match=r"rank 0: \{'epoch': 2, 'seed': 3\}, rank 1: a fresh start.*"
                                           r"checkpoint_latest.pth"):
        trainer._check_ranks_agree()
    monkeypatch.setattr(pretraining.dist, "all_gather_object",
                        lambda records, record: records.__setitem__(slice(None), [record, dict(record)]))
    trainer._check_ranks_agree()  # the same record on every rank
