"""vox2vec-nnunet: vox2vec self-supervised pre-training and probing as an nnU-Net v2 plugin.

Two folders outside the package are installed as packages of their own, so that a plain
``pip install .`` (not only an editable install) carries them into site-packages:

* ``trainers/`` -> ``vox2vec_nnunet_trainers``: the folder ``nnUNet_extTrainer`` points at
  (thin modules that re-export the trainer classes of ``vox2vec_nnunet.training``);
* ``plans/`` -> ``vox2vec_nnunet_plans``: the plans side (the FPN architecture swap and the
  plan templates).
"""
from setuptools import find_packages, setup

setup(
    name="vox2vec-nnunet",
    version="0.1.0",
    description="vox2vec (MICCAI 2023) contrastive voxel-level pre-training, probing and "
                "fine-tuning as an nnU-Net v2 plugin",
    python_requires=">=3.10",
    packages=[
        *find_packages(include=["vox2vec_nnunet", "vox2vec_nnunet.*"]),
        "vox2vec_nnunet_trainers",
        "vox2vec_nnunet_plans",
    ],
    package_dir={
        "vox2vec_nnunet_trainers": "trainers",
        "vox2vec_nnunet_plans": "plans",
    },
    package_data={"vox2vec_nnunet_plans": ["*.json"]},
    install_requires=[
        # torch/torchvision pinned to the releases this project is tested with; nnunetv2
        # pulls them in through timm, the pins keep a fresh machine on the same versions.
        "torch==2.14.1",
        "torchvision==0.29.1",
        "nnunetv2==2.8.1",
        # the parts of nnU-Net's stack our code subclasses or calls, at the releases tested with
        # nnunetv2 2.8.1 (a new release of one of them once broke the install's resolution)
        "dynamic-network-architectures==0.4.4",
        "batchgeneratorsv2==0.3.6",
        "acvl-utils==0.2.6",
        "numpy>=1.26",
        "scipy>=1.11",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "connected-components-3d>=3.12",
    ],
    extras_require={"test": ["pytest>=8"]},
    entry_points={
        "console_scripts": [
            "vox2vec_nnunet_doctor=vox2vec_nnunet.commands.doctor:main",
            "vox2vec_nnunet_plan=vox2vec_nnunet.commands.plan:main",
            "vox2vec_nnunet_prepare_pretraining=vox2vec_nnunet.commands.prepare_pretraining:main",
            "vox2vec_nnunet_import_weights=vox2vec_nnunet.commands.import_weights:main",
            "vox2vec_nnunet_benchmark=vox2vec_nnunet.commands.benchmark:main",
            "vox2vec_nnunet_phantoms=vox2vec_nnunet.commands.phantoms:main",
            "vox2vec_nnunet_demo=vox2vec_nnunet.commands.demo:main",
            "vox2vec_nnunet_embed=vox2vec_nnunet.commands.embed:main",
        ]
    },
)
