import unicodedata
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from vafa.inventory.stock.schemas import Sku
from vafa.kit.money import MoneyError, exponent

# Arabic letters Persian text is often typed with, as the Persian ones (so "كتاب" and "کتاب"
# are one brand), and the zero-width non-joiner kept as it is.
_PERSIAN = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک"})


def clean_text(value: str) -> str:
    """NFC, Persian letters for Arabic look-alikes, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", value).translate(_PERSIAN).split())


Text = Annotated[str, AfterValidator(clean_text)]


class Money(BaseModel):
    amount_minor: int = Field(ge=0, le=2**62, description="In the currency's minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217.")

    @field_validator("currency")
    @classmethod
    def _known(cls, v: str) -> str:
        try:
            exponent(v)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        return v


class ProductUpsert(BaseModel):
    name: Annotated[Text, Field(min_length=1, max_length=300)]
    product_id: Annotated[Text, Field(max_length=128)] = ""
    brand: Annotated[Text, Field(max_length=200)] = ""
    category: Annotated[Text, Field(max_length=200)] = ""
    tags: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50, description="For example a book's genres."
    )
    price: Money
    active: bool = True

    @field_validator("tags")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _name_not_blank(self) -> Self:
        if not self.name:
            raise ValueError("name must not be blank")
        return self


class ProductBulkItem(ProductUpsert):
    sku: Sku


class ProductBulk(BaseModel):
    products: list[ProductBulkItem] = Field(min_length=1, max_length=1000)


class ProductRead(BaseModel):
    sku: str
    product_id: str
    name: str
    brand: str
    category: str
    tags: list[str]
    price: Money
    active: bool
    created_at: datetime
    updated_at: datetime


Outcome = Literal["created", "updated", "unchanged"]


class UpsertResult(BaseModel):
    sku: str
    outcome: Outcome


class BulkResult(BaseModel):
    results: list[UpsertResult]


class RowError(BaseModel):
    row: int = Field(description="The CSV line number (the header is line 1).")
    column: str | None
    detail: str


class ImportReport(BaseModel):
    rows: int
    created: int
    updated: int
    unchanged: int
    errors: list[RowError] = Field(description="Rows not imported, and why; the others were.")
