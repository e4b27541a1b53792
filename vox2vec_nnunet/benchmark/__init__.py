"""The evaluation benchmark: nnU-Net cross-validation folds turned into the paper's tables and figure.

The paper (Sect. 4.2, 5) compares evaluation setups of one FPN backbone — from scratch, linear
probing, non-linear probing, fine-tuning, and probes on a frozen random FPN — by Dice over
cross-validation folds (Table 1, BTCV 5 folds; Table 2, MSD 3 folds) and plots mean Dice against
the number of trainable parameters (Fig. 2). Every number here comes from nnU-Net's own
``fold_k/validation/summary.json``; every fold is trained by the real ``nnUNetv2_train``.

* :mod:`.request` — what a benchmark is asked (``BenchmarkRequest``) and gives back
  (``BenchmarkReport``); :mod:`.pipeline` — ``run_benchmark``, one into the other (the
  evaluation setups and their trainers are :mod:`vox2vec_nnunet.training.setups`);
* :mod:`.layout` — where nnU-Net keeps a setup's folds and what a finished fold holds;
* :mod:`.splits` — K-fold ``splits_final.json`` and the appended few-labeled-cases and inner splits;
* :mod:`.runner` — trains what is missing, resuming unfinished folds;
* :mod:`.collect` — reads the folds back (Dice per label, the trainers' run records);
* :mod:`.repeats` — every fold trained several times (nnU-Net's training is not
  deterministic), a results root per run, each fold the mean over its runs;
* :mod:`.lr_selection` — each setup's learning rate chosen per fold on an inner split of that
  fold's training cases, the final runs at the chosen rates in a results root of their own;
* :mod:`.statistics` — mean ± std over folds, 95% intervals of paired differences, readings;
* :mod:`.table` — the rows of the tables, as Markdown and CSV;
* :mod:`.pretraining_curve` — the checkpoints of pre-training runs, a results root for each,
  Dice against pre-training iterations and its spread over seeds;
* :mod:`.figures` — Dice against trainable parameters (Fig. 2), against labeled cases and
  against pre-training iterations.
"""
