"""Synthetic abdominal phantoms written as nnU-Net v2 raw datasets.

One seed is one subject (:mod:`.anatomy`: tissues and labels painted in millimetres of the
patient frame, :mod:`.geometry`: the scan's grid and orientation), scanned by CT (:mod:`.ct`:
the default small field of view, :mod:`.clinical`: scans as a clinical CT scanner writes them)
or MR (:mod:`.mr`: T1-/T2-weighted contrast, bias field, Rician noise, thick slices) and written
as a dataset (:mod:`.dataset`). The submodules import one another in that order,
never back.
"""
from vox2vec_nnunet.phantoms.anatomy import (AIR_HU, PHANTOM_LABELS, SubjectLandmarks, Tissue, check_seed,
                                             subject_landmarks)
from vox2vec_nnunet.phantoms.clinical import (ClinicalConfig, body_width_mm, clinical_geometry, describe,
                                              make_clinical_phantom)
from vox2vec_nnunet.phantoms.ct import MIN_HU, Phantom, PhantomConfig, make_phantom, render_phantom
from vox2vec_nnunet.phantoms.dataset import case_seed, write_nnunet_raw_dataset
from vox2vec_nnunet.phantoms.geometry import PatientTable, ScanGeometry, origin_lps
from vox2vec_nnunet.phantoms.mr import CONTRASTS, MRConfig, MRPhantom, make_mr_phantom, render_mr

__all__ = ["AIR_HU", "CONTRASTS", "MIN_HU", "PHANTOM_LABELS", "ClinicalConfig", "MRConfig", "MRPhantom",
           "PatientTable", "Phantom", "PhantomConfig", "ScanGeometry", "SubjectLandmarks", "Tissue", "body_width_mm",
           "case_seed", "check_seed", "clinical_geometry", "describe", "make_clinical_phantom", "make_mr_phantom",
           "make_phantom", "origin_lps", "render_mr", "render_phantom", "subject_landmarks",
           "write_nnunet_raw_dataset"]
