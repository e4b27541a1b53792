"""``vox2vec_nnunet_import_weights``: the authors' released FPN weights -> a ``-pretrained_weights`` file.

The released checkpoint is a plain state dict of the FPN (340 entries; names in
``tests/data/vox2vec_fpn3d_state_dict.tsv``). Our network keeps those names under
``backbone.``, so importing is a prefix and a check, written as an nnU-Net-style checkpoint
(``{"network_weights": ...}``) that ``nnUNetv2_train -pretrained_weights`` accepts.

Axis layout. The authors trained on arrays in RAS+ orientation with axes (x, y, z), slice axis
last. nnU-Net hands the network arrays in file index order with the slice axis first; for CT
stored with SimpleITK's usual LPS orientation that is (z, y, x) with x towards the patient's
left and y towards the back. ``--axes reference`` (the default) converts every 3x3x3 kernel to
that layout: axes reversed, then the y and x taps mirrored. For inputs whose sizes are multiples
of 2^(levels-1) the converted FPN on an LPS (z, y, x) array gives exactly the released FPN's
features on the same image in RAS (x, y, z) (a test checks it); at other sizes only the one-voxel
crop after upsampling falls on the other side. ``--axes as_is`` copies the kernels unchanged.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.errors import command
from vox2vec_nnunet.weights import (BACKBONE_PREFIX, PUBLISHED_FPN_FILE, import_fpn_state, load_weights_file,
                                    network_weights, reference_kernels_to_nnunet_layout)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vox2vec_nnunet_import_weights",
                                description="Turn the released vox2vec FPN weights (a plain state dict) into a "
                                            "checkpoint for `nnUNetv2_train -pretrained_weights`. Loads with "
                                            "torch.load(weights_only=True).")
    p.add_argument("file", type=Path, help="the released FPN state dict (.pt/.pth)")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write (.pth)")
    p.add_argument("--axes", choices=("reference", "as_is"), default="reference",
                   help="reference: convert the authors' RAS (x, y, z) kernels to nnU-Net's slice-first LPS (z, y, x) "
                        "layout; as_is: keep them (default: %(default)s)")
    args = p.parse_args(argv)
    state = network_weights(load_weights_file(args.file, PUBLISHED_FPN_FILE), args.file, PUBLISHED_FPN_FILE)
    released = not any(k.startswith(BACKBONE_PREFIX) for k in state)  # the authors' format: pre-trained on CT
    weights, fpn = import_fpn_state(state, args.file)
    if args.axes == "reference":
        weights = reference_kernels_to_nnunet_layout(weights)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"network_weights": weights,
                  "vox2vec": {"source": str(args.file), "axes": args.axes, "base_channels": fpn.base_channels,
                              "num_levels": fpn.num_levels, "in_channels": fpn.in_channels,
                              **({"channel_names": {"0": "CT"}} if released else {})}}
    write_atomically(args.output, lambda tmp: torch.save(checkpoint, tmp))
    print(f"Imported {len(weights)} tensors, kernels {'converted from RAS (x, y, z) to (z, y, x)' if args.axes == 'reference' else 'as they are'} (FPN: {fpn.base_channels} base channels, {fpn.num_levels} levels, "
          f"{sum(v.numel() for k, v in weights.items() if not k.endswith('num_batches_tracked')):,} values); "
          f"no missing or unexpected keys.\nWrote {args.output}\nUse it with: nnUNetv2_train DATASET 3d_vox2vec FOLD "
          f"-p Vox2VecPlans -tr Vox2VecTrainer_NonLinearProbe -pretrained_weights {args.output}")
    return 0
