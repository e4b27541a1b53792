"""vox2vec for nnU-Net v2: contrastive voxel-level pre-training of a 3D FPN (Goncharov et al.,
MICCAI 2023) and its evaluation by linear/non-linear probing and fine-tuning, run through
nnU-Net's own commands."""

__version__ = "0.1.0"
