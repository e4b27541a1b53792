"""The plans side of vox2vec-nnunet: the FPN architecture swap and the plan templates."""
