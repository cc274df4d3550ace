"""MultiLabelImageDataModule: images with any number of labels each, listed in CSV files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from autotimm_classification.csv_data import (
    CsvTable,
    binary_label_columns,
    binary_targets,
    multi_hot,
    read_csv_table,
    split_labels,
)
from autotimm_classification.data import ClassificationDataModule
from autotimm_classification.datasets import ImageFileDataset


class MultiLabelImageDataModule(ClassificationDataModule):
    """Multi-label image classification data from CSV files: each image has zero or more labels.

    The targets are multi-hot float vectors ``(num_classes,)``, what
    ``ImageClassifier(multi_label=True)`` trains on. The labels come in one of two forms:

    - one 0/1 column per label (the default), e.g. ``image,cat,dog`` / ``a.jpg,1,0``;
      ``class_names`` are those columns, in file order;
    - one column of labels separated by ``label_delimiter`` (``labels_column``), e.g.
      ``image,tags`` / ``a.jpg,cat dog``; ``class_names`` are the labels of the training CSV,
      sorted. An empty cell is an image with none of the labels.

    ``class_names`` and ``num_classes`` are set by ``setup``. Without ``val_csv``, ``val_split``
    of the training rows, drawn at random with ``seed``, validates (rows with several labels
    have no single class to stratify by). Transforms, normalization, the data contract with the
    model and the handling of unreadable files are those of ``ImageDataModule``.

    Args:
        train_csv: CSV file of the training images (a header row, then one row per image).
        image_dir: folder the image paths are relative to (absolute paths are kept). Default
            ``"."``: the working directory; None: each CSV file's own folder.
        val_csv: CSV file of the validation images. Default None: held out from ``train_csv``.
        test_csv: CSV file of the test images. Default None.
        label_columns: the 0/1 label columns. Default None: every column except the image
            column (the validation and test CSV must then have the same columns).
        image_column: the column of image paths. Default None: the first column.
        labels_column: instead of 0/1 columns, the one column holding each image's labels.
            Default None.
        label_delimiter: what separates the labels in ``labels_column`` (pieces are stripped,
            so ``","`` also splits ``"cat, dog"``); None: any whitespace. Default ``" "``.
        val_split: fraction of the training rows held out for validation without ``val_csv``;
            0 disables validation. Default 0.1.
        seed: seed of that draw. Default 42.
        verify: check every image file at ``setup`` and leave broken and missing ones out, with
            one warning listing them (otherwise a missing file is an error naming its CSV line).
            Default False.
        balanced_sampling: draw training images with replacement, each weighing as its rarest
            label (``1 / count``), so rare labels are seen about as often as common ones;
            DDP-aware. Default False.
        **kwargs: the arguments every data module takes (``image_size``, ``batch_size``,
            ``num_workers``, ``augmentation_preset``, ``transform_backend``, ``mean``, ``std``,
            ``interpolation``, ``normalize_on_device``, ...; see ``ImageDataModule`` and
            :class:`~autotimm_core.data.BaseDataModule`).

    Raises:
        ValueError: ``label_columns`` together with ``labels_column``, or a bad setting (at
            construction); a CSV file that is empty, lacks a column, holds a value other than
            0/1 in a label column, or a label the training CSV lacks (at ``setup``; the message
            names the file, line and column).
        FileNotFoundError: a CSV file, or an image it lists (without ``verify``), is missing.
    """

    def __init__(
        self,
        train_csv: str | os.PathLike,
        image_dir: str | os.PathLike | None = ".",
        val_csv: str | os.PathLike | None = None,
        test_csv: str | os.PathLike | None = None,
        label_columns: Sequence[str] | None = None,
        image_column: str | None = None,
        labels_column: str | None = None,
        label_delimiter: str | None = " ",
        val_split: float = 0.1,
        seed: int = 42,
        verify: bool = False,
        balanced_sampling: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            val_split=val_split,
            seed=seed,
            verify=verify,
            balanced_sampling=balanced_sampling,
            **kwargs,
        )
        if label_columns is not None and labels_column is not None:
            raise ValueError(
                "label_columns (one 0/1 column per label) and labels_column (one column listing "
                "the labels) are two label formats: pass one of them"
            )
        if isinstance(label_columns, str):
            raise ValueError(
                f"label_columns must be a list of column names, got the string {label_columns!r}"
                f" (for one column listing the labels, use labels_column={label_columns!r})"
            )
        if label_delimiter == "":
            raise ValueError("label_delimiter must be a non-empty string or None (whitespace)")
        self.train_csv = Path(train_csv)
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.val_csv = None if val_csv is None else Path(val_csv)
        self.test_csv = None if test_csv is None else Path(test_csv)
        self.label_columns = None if label_columns is None else [str(c) for c in label_columns]
        self.image_column = image_column
        self.labels_column = labels_column
        self.label_delimiter = label_delimiter

    @property
    def num_labels(self) -> int | None:
        """``num_classes`` under its name in AutoTimm's upstream API (None before ``setup``)."""
        return self.num_classes

    @property
    def label_names(self) -> list[str] | None:
        """``class_names`` under its name in AutoTimm's upstream API (None before ``setup``)."""
        return self.class_names

    # ------------------------------------------------------------------ preparing
    def read_splits(self, stage: str | None) -> None:
        train_table = read_csv_table(self.train_csv)
        image_column = self.image_column or train_table.header[0]
        train_table.column(image_column, "image_column")
        if self.labels_column is not None:
            if self.labels_column == image_column:
                raise ValueError(f"labels_column and image_column are both '{image_column}'")
            train_labels = split_labels(train_table, self.labels_column, self.label_delimiter)
            classes = sorted({name for names in train_labels for name in names})
            if not classes:
                raise ValueError(
                    f"CSV file '{self.train_csv}', column '{self.labels_column}' holds no labels"
                )
        else:
            classes = binary_label_columns(train_table, image_column, self.label_columns)
        class_to_idx = {name: i for i, name in enumerate(classes)}

        def split(table: CsvTable) -> ImageFileDataset:
            if self.labels_column is not None:
                labels = split_labels(table, self.labels_column, self.label_delimiter)
                rows = multi_hot(table, labels, self.labels_column, class_to_idx, self.train_csv)
            else:
                if table is not train_table and self.label_columns is None:
                    self._check_same_columns(table, train_table, image_column)
                rows = binary_targets(table, classes)
            targets = [torch.tensor(row, dtype=torch.float32) for row in rows]
            paths = self._csv_image_paths(table, image_column, self.image_dir)
            return ImageFileDataset(self._verified(list(zip(paths, targets))))

        train = split(train_table)
        if self.val_csv is not None:
            self.train_dataset = train
            self.val_dataset = split(read_csv_table(self.val_csv))
        else:
            # One stratum: a seeded random draw of val_split of the rows.
            self.train_dataset, self.val_dataset = self._split_train(train, [0] * len(train))
        if self.test_csv is not None:
            self.test_dataset = split(read_csv_table(self.test_csv))
        self.class_names = classes

    @staticmethod
    def _check_same_columns(table: CsvTable, train: CsvTable, image_column: str) -> None:
        # With label_columns=None the columns are the labels: a column only one file has would
        # otherwise be ignored (or missing) without a word.
        extra = [c for c in table.header if c not in train.header]
        missing = [c for c in train.header if c not in table.header]
        if extra or missing:
            raise ValueError(
                f"CSV file '{table.path}' line 1: its columns differ from the training CSV "
                f"'{train.path}' (columns only here: {extra}; missing here: {missing}); with "
                "label_columns=None every column but the image column is a label"
            )
        table.column(image_column, "image_column")
