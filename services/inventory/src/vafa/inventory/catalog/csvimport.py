"""The catalogue CSV: one product per row, read into `ProductBulkItem`s, every problem named
by line and column. A row is imported whole or not at all.

Columns: sku, name, price (major units: "12.50", "۱۲۵٬۰۰۰"), currency (required); product_id,
brand, category, tags (separated by "|", ";" or the Persian comma "،"), active (true/false,
yes/no, 1/0, بله/خیر) optional. Unknown columns are refused, so a typo is not silently lost.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from pydantic import ValidationError

from vafa.inventory.catalog.schemas import ProductBulkItem, RowError
from vafa.kit.errors import Problem
from vafa.kit.money import MoneyError, exponent, to_minor

REQUIRED = ("sku", "name", "price", "currency")
OPTIONAL = ("product_id", "brand", "category", "tags", "active")
MAX_ROWS = 20_000

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩٫", "01234567890123456789.")
_TRUE = {"true", "yes", "1", "y", "بله", "آری", "فعال"}
_FALSE = {"false", "no", "0", "n", "خیر", "نه", "غیرفعال"}


@dataclass(frozen=True, slots=True)
class Parsed:
    items: list[tuple[int, ProductBulkItem]]  # (line, product)
    errors: list[RowError]
    rows: int


def _problem(detail: str, **extensions: object) -> Problem:
    return Problem(422, detail, title="The CSV cannot be read", type="csv-invalid", **extensions)


def _amount(raw: str) -> str:
    return "".join(raw.translate(_DIGITS).split()).replace("٬", "").replace(",", "")


def parse(data: bytes) -> Parsed:
    try:
        body = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _problem(f"The file is not UTF-8 (byte {exc.start}).") from None
    reader = csv.reader(io.StringIO(body, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise _problem("The file is empty: expected a header row.") from None
    except csv.Error as exc:
        raise _problem(f"Line 1: {exc}.", row=1) from None
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in columns]
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or unknown or duplicated:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        if duplicated:
            parts.append(f"repeated column(s) {', '.join(duplicated)}")
        raise _problem(
            f"Line 1 (header): {'; '.join(parts)}.",
            row=1,
            missing=missing,
            unknown=unknown,
            duplicated=duplicated,
        )
    items: list[tuple[int, ProductBulkItem]] = []
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    rows = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _problem(f"Line {reader.line_num}: {exc}.", row=reader.line_num) from None
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        rows += 1
        if rows > MAX_ROWS:
            raise _problem(f"At most {MAX_ROWS} rows per file.", row=line)
        if len(record) != len(columns):
            errors.append(
                RowError(
                    row=line,
                    column=None,
                    detail=f"{len(record)} cells where the header has {len(columns)}",
                )
            )
            continue
        cells = dict(zip(columns, record, strict=True))
        item = _row(line, cells, errors)
        if item is None:
            continue
        if item.sku in first_line:
            errors.append(
                RowError(
                    row=line,
                    column="sku",
                    detail=f"SKU {item.sku!r} is already on line {first_line[item.sku]}",
                )
            )
            continue
        first_line[item.sku] = line
        items.append((line, item))
    return Parsed(items, errors, rows)


def _row(line: int, cells: dict[str, str], errors: list[RowError]) -> ProductBulkItem | None:
    currency = cells["currency"].strip().upper()
    try:
        exponent(currency)
    except MoneyError as exc:
        errors.append(RowError(row=line, column="currency", detail=str(exc)))
        return None
    try:
        price = to_minor(_amount(cells["price"]), currency)
        if price < 0:
            raise MoneyError("a price cannot be negative")
    except MoneyError as exc:
        errors.append(RowError(row=line, column="price", detail=str(exc)))
        return None
    active_raw = cells.get("active", "").strip().lower()
    if active_raw and active_raw not in _TRUE | _FALSE:
        errors.append(
            RowError(row=line, column="active", detail=f"{active_raw!r} is not yes or no")
        )
        return None
    tags_raw = cells.get("tags", "")
    for sep in (";", "،"):
        tags_raw = tags_raw.replace(sep, "|")
    data = {
        "sku": cells["sku"],
        "name": cells["name"],
        "product_id": cells.get("product_id", ""),
        "brand": cells.get("brand", ""),
        "category": cells.get("category", ""),
        "tags": [t for t in (t.strip() for t in tags_raw.split("|")) if t],
        "price": {"amount_minor": price, "currency": currency},
        "active": active_raw not in _FALSE,
    }
    try:
        return ProductBulkItem.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err.get("loc", ())
            column = str(loc[0]) if loc else None
            errors.append(RowError(row=line, column=column, detail=err.get("msg", "invalid")))
        return None
