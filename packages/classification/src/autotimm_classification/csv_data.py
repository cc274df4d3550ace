"""Image lists read from CSV files: ``image,label`` rows and multi-label rows.

Errors name the file, the line (as an editor numbers it: the header is line 1) and the column,
so that a bad row in a file of a million can be found.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: How many missing image files an error lists (their count is always given).
_LISTED = 5


@dataclass(frozen=True)
class CsvTable:
    """A CSV file's header and data rows, each row with its line number."""

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]

    def column(self, name: str, parameter: str) -> int:
        """Index of column ``name``; a ValueError naming ``parameter`` and the columns if absent."""
        if name not in self.header:
            raise ValueError(
                f"CSV file '{self.path}' has no column '{name}' ({parameter}); "
                f"its columns: {self.header}"
            )
        return self.header.index(name)


def read_csv_table(path: str | os.PathLike) -> CsvTable:
    """Read a comma-separated file with a header row (UTF-8, a byte-order mark is allowed).

    Blank lines are skipped and cells are stripped of surrounding spaces.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, has no data rows, repeats or leaves out a column name, or
            has a row with another number of values than the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file '{path}' not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        rows: list[tuple[int, list[str]]] = []
        for row in reader:
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if header is None:
                header = cells
                continue
            if len(cells) != len(header):
                raise ValueError(
                    f"CSV file '{path}' line {reader.line_num}: {len(cells)} values, but the "
                    f"header has {len(header)} columns {header}"
                )
            rows.append((reader.line_num, cells))
    if header is None:
        raise ValueError(
            f"CSV file '{path}' is empty: expected a header row, then one row per image"
        )
    blank = [i + 1 for i, name in enumerate(header) if not name]
    if blank:
        raise ValueError(f"CSV file '{path}' line 1: column(s) {blank} of the header have no name")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"CSV file '{path}' line 1: repeated column name(s) {repeated}")
    if not rows:
        raise ValueError(f"CSV file '{path}' has a header {header} but no rows")
    return CsvTable(path, header, rows)


def image_paths(
    table: CsvTable, column: str, parameter: str, image_dir: str | os.PathLike | None
) -> list[str]:
    """The image path of each row: ``column`` joined to ``image_dir`` (default: the CSV's folder);
    absolute paths are kept."""
    idx = table.column(column, parameter)
    root = table.path.parent if image_dir is None else Path(image_dir)
    out = []
    for line, cells in table.rows:
        if not cells[idx]:
            raise ValueError(
                f"CSV file '{table.path}' line {line}, column '{column}': no image path"
            )
        out.append(os.path.join(root, cells[idx]))
    return out


def check_images_exist(table: CsvTable, paths: Sequence[str]) -> None:
    """A FileNotFoundError naming the CSV lines (the first few) whose image file is missing."""
    missing = [(line, p) for (line, _), p in zip(table.rows, paths) if not os.path.isfile(p)]
    if not missing:
        return
    listing = "; ".join(f"line {line}: '{p}'" for line, p in missing[:_LISTED])
    more = f"; and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
    raise FileNotFoundError(
        f"{len(missing)} of {len(paths)} image files listed in '{table.path}' do not exist: "
        f"{listing}{more}. Check image_dir, or pass verify=True to leave unreadable and missing "
        "files out"
    )


def single_labels(table: CsvTable, column: str) -> list[str]:
    """The label of each row, from ``column`` (label_column); an empty cell is an error."""
    idx = table.column(column, "label_column")
    labels = []
    for line, cells in table.rows:
        if not cells[idx]:
            raise ValueError(f"CSV file '{table.path}' line {line}, column '{column}': no label")
        labels.append(cells[idx])
    return labels


def label_indices(
    table: CsvTable, labels: Sequence[str], column: str, class_to_idx: dict[str, int], source: Path
) -> list[int]:
    """Class index of each row's label; a label unknown to the training CSV ``source`` is an error."""
    out = []
    for (line, _), label in zip(table.rows, labels):
        if label not in class_to_idx:
            raise ValueError(
                f"CSV file '{table.path}' line {line}, column '{column}': label '{label}' is not "
                f"in the training CSV '{source}'; its labels: {sorted(class_to_idx)}"
            )
        out.append(class_to_idx[label])
    return out


def binary_label_columns(
    table: CsvTable, image_column: str, label_columns: Sequence[str] | None
) -> list[str]:
    """The label columns of a multi-label CSV: ``label_columns``, checked to exist, or (None) every
    column except the image column, in file order."""
    if label_columns is None:
        columns = [name for name in table.header if name != image_column]
        if not columns:
            raise ValueError(
                f"CSV file '{table.path}' has only the image column '{image_column}': add one "
                "0/1 column per label, or name a column of labels with labels_column"
            )
        return columns
    columns = [str(c) for c in label_columns]
    if not columns:
        raise ValueError(
            "label_columns must name at least one column, or be None (all but the image column)"
        )
    for name in columns:
        table.column(name, "label_columns")
    if image_column in columns:
        raise ValueError(f"label_columns includes the image column '{image_column}'")
    return columns


def binary_targets(table: CsvTable, columns: Sequence[str]) -> list[list[float]]:
    """Each row's 0/1 values in ``columns`` (``0``, ``1``, ``0.0``, ``1.0``, ``true``/``false``)."""
    idx = [table.column(name, "label_columns") for name in columns]
    out = []
    for line, cells in table.rows:
        row = []
        for name, i in zip(columns, idx):
            value = _BINARY.get(cells[i].lower())
            if value is None:
                raise ValueError(
                    f"CSV file '{table.path}' line {line}, column '{name}': expected 0 or 1, "
                    f"got '{cells[i]}'"
                )
            row.append(value)
        out.append(row)
    return out


_BINARY = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}


def split_labels(table: CsvTable, column: str, delimiter: str | None) -> list[list[str]]:
    """Each row's labels from one column, split at ``delimiter`` (None: any whitespace).

    Pieces are stripped and empty ones dropped, so ``"cat, dog"`` splits at ``","`` as
    ``["cat", "dog"]``; an empty cell is an image with no label.
    """
    idx = table.column(column, "labels_column")
    return [
        [p.strip() for p in cells[idx].split(delimiter) if p.strip()] for _, cells in table.rows
    ]


def multi_hot(
    table: CsvTable,
    labels: Sequence[Sequence[str]],
    column: str,
    class_to_idx: dict[str, int],
    source: Path,
) -> list[list[float]]:
    """Multi-hot rows of the split labels; a label unknown to the training CSV is an error."""
    out = []
    for (line, _), names in zip(table.rows, labels):
        row = [0.0] * len(class_to_idx)
        for name in names:
            if name not in class_to_idx:
                raise ValueError(
                    f"CSV file '{table.path}' line {line}, column '{column}': label '{name}' is "
                    f"not in the training CSV '{source}'; its labels: {sorted(class_to_idx)}"
                )
            row[class_to_idx[name]] = 1.0
        out.append(row)
    return out
