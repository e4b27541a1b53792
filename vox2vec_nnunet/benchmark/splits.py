"""Cross-validation splits through nnU-Net's own mechanism: ``splits_final.json``.

nnU-Net trains fold ``i`` on ``splits_final.json[i]`` of the preprocessed dataset folder
(``nnUNetTrainer.do_split``) and builds a 5-fold split itself only when the file is absent.

* **K regular folds** (paper Sect. 4.2: 5 folds on BTCV, 3 on MSD): the file is written with
  ``nnunetv2.utilities.crossval_split.generate_crossval_split`` over the sorted training
  identifiers with nnU-Net's seed 12345 — for K = 5 exactly the split nnU-Net would make.
  An existing file with another number of regular folds is never silently replaced.
* **Label efficiency** (the paper's stated future work, Sect. 6; pre-training helps most with few
  labeled cases, docs/method.md, "What a small CPU run can show"): for k labeled cases and
  regular fold f, an extra split trains on k cases
  drawn from fold f's training cases and validates on fold f's validation cases. The draw is
  the first k entries of one seeded permutation per fold, so the subsets are nested (the k=1
  case is inside the k=2 cases, ...) and adding labeled counts later gives the same subsets. These
  splits are appended after the K regular ones (which are never reordered or changed); the
  mapping (k, f) -> fold index is kept in ``vox2vec_label_efficiency.json`` beside the file, and
  existing entries keep their index, because results live in ``fold_{index}`` folders.
* **Inner splits** (learning-rate selection, :mod:`.lr_selection`): for each scored fold — a
  regular fold f, or its split of k labeled cases — a split of *that fold's training cases
  only*: about a third of them (``max(1, (n + 1) // 3)`` of ``n``) validate, the rest train, drawn
  by one permutation of the sorted cases seeded by ``(seed, f, k, 1)`` (k = 0 for the regular
  fold; the trailing 1 keeps it apart from the labeled draw's stream). The scored fold's own
  validation cases are never in it. Appended the same way, with the mapping (f, k) -> fold
  index in ``vox2vec_lr_selection.json``.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from nnunetv2.utilities.crossval_split import generate_crossval_split

from vox2vec_nnunet.atomic import write_atomically

SPLITS_FILE = "splits_final.json"
LABEL_EFFICIENCY_FILE = "vox2vec_label_efficiency.json"
SELECTION_SPLITS_FILE = "vox2vec_lr_selection.json"
SPLIT_SEED = 12345  # nnU-Net's seed for its default split (nnUNetTrainer.do_split)


class SplitsError(ValueError):
    """A splits file that cannot be used as asked; the message says which file and why."""


@dataclass(frozen=True)
class LabeledSplit:
    """Fold ``fold_index`` of ``splits_final.json`` trains on ``num_labeled`` cases of regular
    fold ``fold`` and validates on that fold's validation cases."""

    num_labeled: int
    fold: int
    fold_index: int


@dataclass(frozen=True)
class InnerSplit:
    """Fold ``fold_index`` of ``splits_final.json`` is the inner split of a scored fold: regular
    fold ``fold`` (``num_labeled`` None) or its split of ``num_labeled`` labeled cases. It trains
    and validates on that scored fold's training cases only."""

    fold: int
    num_labeled: int | None
    fold_index: int


@dataclass(frozen=True)
class SplitsState:
    """``splits_final.json`` and its label-efficiency and inner-split mappings as they are on disk."""

    splits: list[dict[str, list[str]]]
    num_regular_folds: int
    labeled: list[LabeledSplit] = field(default_factory=list)
    seed: int = SPLIT_SEED
    inner: list[InnerSplit] = field(default_factory=list)

    def fold_index(self, num_labeled: int, fold: int) -> int:
        for s in self.labeled:
            if (s.num_labeled, s.fold) == (num_labeled, fold):
                return s.fold_index
        raise KeyError(f"no label-efficiency split with {num_labeled} labeled cases for fold {fold}")

    def inner_index(self, fold: int, num_labeled: int | None) -> int:
        """The fold index of the inner split of regular fold ``fold`` (``num_labeled`` None) or of
        its split of ``num_labeled`` labeled cases."""
        for s in self.inner:
            if (s.fold, s.num_labeled) == (fold, num_labeled):
                return s.fold_index
        of = f"fold {fold}" if num_labeled is None else f"{num_labeled} labeled cases of fold {fold}"
        raise KeyError(f"no inner split of {of} (written by --run --select_lr)")


def training_identifiers(preprocessed_dataset_dir: Path, plans: str, configuration: str,
                         raw_dataset_dir: Path | None) -> list[str]:
    """The dataset's training case identifiers, sorted, read as nnU-Net reads them.

    First from the preprocessed folder of ``configuration`` (its ``data_identifier`` in the
    plans; ``infer_dataset_class(...).get_identifiers``, as ``do_split`` does), else from the
    raw dataset (``dataset.json`` ``dataset`` entries or ``imagesTr``, via
    ``get_filenames_of_train_images_and_targets``).
    """
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    plans_file = preprocessed_dataset_dir / f"{plans}.json"
    looked = [str(plans_file)]
    if plans_file.is_file():
        try:
            config = PlansManager(str(plans_file)).get_configuration(configuration)
        except (RuntimeError, ValueError) as e:
            raise SplitsError(f"{plans_file}: {e}") from e
        data_folder = preprocessed_dataset_dir / config.data_identifier
        looked.append(str(data_folder))
        if data_folder.is_dir() and any(data_folder.iterdir()):
            return sorted(infer_dataset_class(str(data_folder)).get_identifiers(str(data_folder)))
    if raw_dataset_dir is not None:
        looked.append(str(raw_dataset_dir / "dataset.json"))
        if (raw_dataset_dir / "dataset.json").is_file():
            return sorted(get_filenames_of_train_images_and_targets(str(raw_dataset_dir)))
    raise SplitsError("cannot list the training cases: no preprocessed data and no raw dataset "
                      f"(looked at {', '.join(looked)}); run nnU-Net's preprocessing first")


def _write_json(path: Path, data: object) -> None:
    """Write ``data`` so that an interrupted run, or an ``nnUNetv2_train`` reading the file
    meanwhile, sees the old file or the new one, never a part."""
    text = json.dumps(data, indent=4) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def read_splits(preprocessed_dataset_dir: Path) -> SplitsState | None:
    """The splits on disk, or None if there is no ``splits_final.json``."""
    splits_path = preprocessed_dataset_dir / SPLITS_FILE
    if not splits_path.is_file():
        return None
    try:
        splits = json.loads(splits_path.read_text())
    except json.JSONDecodeError as e:
        raise SplitsError(f"{splits_path} is not valid JSON: {e}") from e
    if not isinstance(splits, list) or not all(
            isinstance(s, dict) and {"train", "val"} <= s.keys() for s in splits):
        raise SplitsError(f"{splits_path} must be a list of {{'train': [...], 'val': [...]}}")
    state = SplitsState(splits, len(splits))
    mapping_path = preprocessed_dataset_dir / LABEL_EFFICIENCY_FILE
    if mapping_path.is_file():
        try:
            mapping = json.loads(mapping_path.read_text())
            state = SplitsState(splits, int(mapping["num_regular_folds"]),
                                [LabeledSplit(int(s["num_labeled"]), int(s["fold"]), int(s["fold_index"]))
                                 for s in mapping["splits"]], int(mapping["seed"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SplitsError(f"{mapping_path} is not a valid label-efficiency mapping: {e!r}") from e
        _check_indices(state, state.labeled, mapping_path, splits_path)
    inner_path = preprocessed_dataset_dir / SELECTION_SPLITS_FILE
    if inner_path.is_file():
        try:
            mapping = json.loads(inner_path.read_text())
            num_regular_folds, seed = int(mapping["num_regular_folds"]), int(mapping["seed"])
            inner = [InnerSplit(int(s["fold"]), None if s["num_labeled"] is None else int(s["num_labeled"]),
                                int(s["fold_index"])) for s in mapping["splits"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SplitsError(f"{inner_path} is not a valid inner-split mapping: {e!r}") from e
        if mapping_path.is_file() and num_regular_folds != state.num_regular_folds:
            raise SplitsError(f"{inner_path} says {num_regular_folds} regular folds, {mapping_path} says "
                              f"{state.num_regular_folds}; rewrite them with --overwrite_splits")
        state = replace(state, num_regular_folds=num_regular_folds, seed=seed, inner=inner)
        _check_indices(state, state.inner, inner_path, splits_path)
    return state


def _check_indices(state: SplitsState, entries: Sequence[LabeledSplit | InnerSplit], mapping_path: Path,
                   splits_path: Path) -> None:
    """Refuse a mapping whose entries do not point after the regular folds into the file."""
    bad = [s for s in entries if not state.num_regular_folds <= s.fold_index < len(state.splits)]
    if state.num_regular_folds > len(state.splits) or bad:
        raise SplitsError(f"{mapping_path} does not match {splits_path} ({len(state.splits)} splits): "
                          f"regular folds {state.num_regular_folds}, entries {bad}; "
                          f"rewrite both with --overwrite_splits")


def ensure_regular_splits(preprocessed_dataset_dir: Path, num_folds: int,
                          identifiers: Callable[[], list[str]], overwrite: bool = False
                          ) -> SplitsState:
    """Make ``splits_final.json`` hold ``num_folds`` regular folds and return what is on disk.

    An existing file with ``num_folds`` regular folds is kept as it is (including a custom
    split). One with a different count is refused unless ``overwrite``; overwriting also drops
    the label-efficiency and inner-split mappings, whose indices pointed into the old file. ``identifiers`` is
    only called when a new file is written.
    """
    splits_path = preprocessed_dataset_dir / SPLITS_FILE
    state = None if overwrite else read_splits(preprocessed_dataset_dir)
    if state is not None:
        if state.num_regular_folds != num_folds:
            raise SplitsError(
                f"{splits_path} holds {state.num_regular_folds} regular folds, but {num_folds} "
                f"were asked for: pass --folds {state.num_regular_folds} to use it, or "
                f"--overwrite_splits to replace it (results trained on the old folds then no "
                f"longer match their split)")
        return state
    cases = sorted(identifiers())
    if not 2 <= num_folds <= len(cases):
        raise SplitsError(f"cannot make {num_folds} folds from {len(cases)} training cases "
                          f"(need 2 <= folds <= cases)")
    splits = [{"train": [str(c) for c in s["train"]], "val": [str(c) for c in s["val"]]}
              for s in generate_crossval_split(cases, seed=SPLIT_SEED, n_splits=num_folds)]
    preprocessed_dataset_dir.mkdir(parents=True, exist_ok=True)
    _write_json(splits_path, splits)
    (preprocessed_dataset_dir / LABEL_EFFICIENCY_FILE).unlink(missing_ok=True)
    (preprocessed_dataset_dir / SELECTION_SPLITS_FILE).unlink(missing_ok=True)
    return SplitsState(splits, num_folds)


def labeled_subset(train_cases: Sequence[str], num_labeled: int, fold: int, seed: int) -> list[str]:
    """``num_labeled`` of ``train_cases``: the first entries of a permutation seeded by
    ``(seed, fold)`` of the sorted cases, so smaller labeled counts are subsets of larger ones."""
    cases = sorted(train_cases)
    if not 1 <= num_labeled <= len(cases):
        raise SplitsError(f"fold {fold} has {len(cases)} training cases, cannot draw {num_labeled}")
    order = np.random.default_rng((seed, fold)).permutation(len(cases))
    return [cases[i] for i in order[:num_labeled]]


def ensure_label_efficiency_splits(preprocessed_dataset_dir: Path, labeled_counts: Sequence[int]
                                   ) -> SplitsState:
    """Append the missing (labeled count, regular fold) splits for every regular fold; return the state.

    Splits already in the mapping keep their index and are checked against a fresh draw (a
    mismatch means the file was edited, and is refused).
    """
    state = read_splits(preprocessed_dataset_dir)
    if state is None:
        raise SplitsError(f"no {SPLITS_FILE} in {preprocessed_dataset_dir}: the regular folds "
                          f"must be written before the label-efficiency splits")
    splits = list(state.splits)
    labeled = list(state.labeled)
    known = {(s.num_labeled, s.fold): s.fold_index for s in labeled}
    for k in sorted(set(labeled_counts)):
        for f in range(state.num_regular_folds):
            expected = {"train": labeled_subset(splits[f]["train"], k, f, state.seed),
                        "val": list(splits[f]["val"])}
            if (k, f) in known:
                index = known[(k, f)]
                if sorted(splits[index]["train"]) != sorted(expected["train"]) or \
                        sorted(splits[index]["val"]) != sorted(expected["val"]):
                    raise SplitsError(
                        f"split {index} of {preprocessed_dataset_dir / SPLITS_FILE} is not the "
                        f"{k}-labeled split of fold {f} recorded in {LABEL_EFFICIENCY_FILE}; "
                        f"rewrite both with --overwrite_splits")
                continue
            labeled.append(LabeledSplit(k, f, len(splits)))
            splits.append(expected)
    if len(splits) == len(state.splits):
        return state
    _write_json(preprocessed_dataset_dir / SPLITS_FILE, splits)
    _write_json(preprocessed_dataset_dir / LABEL_EFFICIENCY_FILE, {
        "description": "splits_final.json entries after the regular folds: training on "
                       "num_labeled cases of regular fold 'fold', validating on its cases",
        "num_regular_folds": state.num_regular_folds,
        "seed": state.seed,
        "splits": [{"num_labeled": s.num_labeled, "fold": s.fold, "fold_index": s.fold_index}
                   for s in labeled]})
    return replace(state, splits=splits, labeled=labeled)


def inner_split(train_cases: Sequence[str], fold: int, num_labeled: int | None, seed: int
                ) -> dict[str, list[str]]:
    """The inner split of a scored fold whose training cases are ``train_cases`` (nothing else):
    ``max(1, (n + 1) // 3)`` of the ``n`` cases validate, the rest train, chosen by a permutation
    of the sorted cases seeded by ``(seed, fold, num_labeled or 0, 1)``."""
    cases = sorted(train_cases)
    if len(cases) < 2:
        of = f"fold {fold}" if num_labeled is None else f"the {num_labeled} labeled cases of fold {fold}"
        raise SplitsError(f"{of} has {len(cases)} training case(s); an inner split for learning-rate "
                          f"selection needs at least 2")
    order = np.random.default_rng((seed, fold, num_labeled or 0, 1)).permutation(len(cases))
    num_val = max(1, (len(cases) + 1) // 3)
    return {"train": sorted(cases[i] for i in order[num_val:]), "val": sorted(cases[i] for i in order[:num_val])}


def ensure_inner_splits(preprocessed_dataset_dir: Path, scored: Sequence[tuple[int, int | None]]) -> SplitsState:
    """Append the missing inner splits of the scored folds ``scored`` — (regular fold, None) or
    (regular fold, labeled count), whose label-efficiency split must exist — and return the state.
    Existing inner splits keep their index and are checked against a fresh draw."""
    state = read_splits(preprocessed_dataset_dir)
    if state is None:
        raise SplitsError(f"no {SPLITS_FILE} in {preprocessed_dataset_dir}: the regular folds "
                          f"must be written before the inner splits")
    splits = list(state.splits)
    inner = list(state.inner)
    known = {(s.fold, s.num_labeled): s.fold_index for s in inner}
    for fold, k in dict.fromkeys(scored):
        source = splits[fold] if k is None else splits[state.fold_index(k, fold)]
        expected = inner_split(source["train"], fold, k, state.seed)
        if (fold, k) in known:
            index = known[(fold, k)]
            if sorted(splits[index]["train"]) != expected["train"] or sorted(splits[index]["val"]) != expected["val"]:
                raise SplitsError(
                    f"split {index} of {preprocessed_dataset_dir / SPLITS_FILE} is not the inner split "
                    f"recorded in {SELECTION_SPLITS_FILE}; rewrite both with --overwrite_splits")
            continue
        inner.append(InnerSplit(fold, k, len(splits)))
        splits.append(expected)
    if len(splits) == len(state.splits):
        return state
    _write_json(preprocessed_dataset_dir / SPLITS_FILE, splits)
    _write_json(preprocessed_dataset_dir / SELECTION_SPLITS_FILE, {
        "description": "splits_final.json entries after the regular folds: the inner split of regular fold "
                       "'fold' (num_labeled null) or of its split of num_labeled labeled cases, made of that "
                       "split's training cases only, for learning-rate selection",
        "num_regular_folds": state.num_regular_folds,
        "seed": state.seed,
        "splits": [{"fold": s.fold, "num_labeled": s.num_labeled, "fold_index": s.fold_index} for s in inner]})
    return replace(state, splits=splits, inner=inner)
