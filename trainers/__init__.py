"""The nnU-Net trainers of vox2vec-nnunet, for ``nnUNet_extTrainer`` to point at.

nnU-Net imports every module of this folder as a top-level module; each module here only
re-exports classes from ``vox2vec_nnunet.training`` so they keep their package path."""
