"""Shared fixtures: the reference state-dict table of the published FPN checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

# Names, shapes and dtypes of the authors' released FPN checkpoint (340 entries).
REFERENCE_TABLE = Path(__file__).resolve().parent / "data" / "vox2vec_fpn3d_state_dict.tsv"


def published_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with exactly the names, shapes and dtypes of the released checkpoint."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for line in REFERENCE_TABLE.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        if dtype == "int64":
            state[key] = torch.randint(0, 1000, dims, generator=g, dtype=torch.int64)
        else:
            state[key] = torch.randn(dims, generator=g, dtype=getattr(torch, dtype))
    return state
