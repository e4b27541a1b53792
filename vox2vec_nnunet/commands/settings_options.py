"""Command-line options that override a vox2vec configuration (shared by the plan and data commands)."""
from __future__ import annotations

import argparse
import os

from vox2vec_nnunet_plans.builder import DEFAULT_PLANS_NAME, ConfigurationSettings


def add_settings_options(p: argparse.ArgumentParser, defaults: ConfigurationSettings, batch_size: bool) -> None:
    """``-p``, ``--spacing``, ``--patch_size``, [``--batch_size``], ``--base_channels``, ``--num_levels``, ``-np``."""
    p.add_argument("-p", "--plans_name", default=DEFAULT_PLANS_NAME, help="plans identifier (default: %(default)s)")
    p.add_argument("--spacing", nargs=3, type=float, metavar=("SLICE", "INPLANE", "INPLANE"),
                   help=f"target spacing in mm, slice axis first (default: {list(defaults.spacing)})")
    p.add_argument("--patch_size", nargs=3, type=int, metavar=("SLICE", "INPLANE", "INPLANE"),
                   help=f"patch size in voxels, slice axis first (default: {list(defaults.patch_size)})")
    if batch_size:
        p.add_argument("--batch_size", type=int, help=f"batch size (default: {defaults.batch_size})")
    p.add_argument("--base_channels", type=int, help=f"FPN base channels (default: {defaults.base_channels})")
    p.add_argument("--num_levels", type=int, help=f"FPN levels (default: {defaults.num_levels})")
    p.add_argument("-np", "--num_processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="parallel processes (default: %(default)s)")


def settings_from_options(defaults: ConfigurationSettings, args: argparse.Namespace) -> ConfigurationSettings:
    return defaults.with_overrides(args.spacing, args.patch_size, getattr(args, "batch_size", None),
                                   args.base_channels, args.num_levels)
