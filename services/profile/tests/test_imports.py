"""CSV import against the real database: create-or-update by email then phone, the row-level
error report, no half-written rows, resumable and idempotent by content, concurrent runners,
oversized and unreadable files, the worker taking queued imports, and an export read back."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.cli import ServiceSpec
from vafa.kit.db import Database
from vafa.kit.settings import KafkaSettings, ServiceSettings
from vafa.kit.testing.plugin import principal_headers, settings_for
from vafa.kit.testing.poll import eventually
from vafa.profile.config import Settings
from vafa.profile.imports import service as imports

from .factories import unique

MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")
CSV = {**MARKETER, "content-type": "text/csv"}
PROBLEM = "application/problem+json"


@pytest.fixture
def settings(service_spec: ServiceSpec, database_url: str, kafka: KafkaSettings) -> ServiceSettings:
    """Small limits so the batch, queue and size paths run on small files."""
    return settings_for(
        service_spec,
        database_url,
        kafka,
        import_max_bytes=4096,
        import_inline_rows=5,
        import_batch_rows=2,
    )


def persian(s: str) -> str:
    return s.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))


def new_phone() -> str:
    return "0912" + str(uuid.uuid4().int)[:7]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


async def customer_by(db: Database, kind: str, value: str) -> dict[str, Any] | None:
    async with db.sessionmaker() as s:
        row = (
            (
                await s.execute(
                    text(
                        "SELECT c.* FROM customers c JOIN customer_identities i "
                        "ON i.customer_id = c.id WHERE i.kind = :k AND i.value = :v"
                    ),
                    {"k": kind, "v": value},
                )
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row else None


async def outbox_types(db: Database, customer_id: Any) -> list[Any]:
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"),
                {"k": str(customer_id)},
            )
        ).all()
    return [cloudevents.decode([(k, v.encode()) for k, v in h], p).message for h, p in rows]


def csv_of(*lines: str, bom: bool = False) -> bytes:
    return (("\ufeff" if bom else "") + "\r\n".join(lines) + "\r\n").encode()


async def test_rows_create_and_errors_are_reported_per_row(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b, bad = (f"{unique()}@example.com" for _ in range(3))
    phone = new_phone()
    body = csv_of(
        "Email,Phone,First_Name,Last_Name,Gender,Birth_Date,City,Tags",
        f"{a},,سارا,احمدی,female,۱۳۶۹-۰۱-۰۱,تهران,vip;newsletter",
        f",{persian(phone)},Ani,Պետրոսյան,,1990-05-01,Yerevan,",
        f"{bad},12-ab,Bad,Phone,robot,1990-02-30,,",  # three errors: nothing of it is written
        ",,No,Contact,,,,",
        f"{b},,Ok,Again,,,,",
        bom=True,
    )
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    assert r.status_code == 201, r.text
    report = r.json()
    assert r.headers["location"] == f"/v1/customers/imports/{report['id']}"
    assert report["status"] == "done"
    assert (report["total_rows"], report["processed_rows"]) == (5, 5)
    assert (report["created"], report["updated"], report["rejected_rows"]) == (3, 0, 2)
    assert [(e["row"], e["column"]) for e in report["errors"]] == [
        (3, "birth_date"),
        (3, "gender"),
        (3, "phone"),
        (4, "email"),
    ]
    assert await customer_by(db, "email", bad) is None  # the failing row wrote nothing

    sara = await customer_by(db, "email", a)
    assert sara is not None
    assert (sara["first_name"], sara["gender"], sara["city"]) == ("سارا", "female", "تهران")
    assert sara["birth_date"].isoformat() == "1990-03-21"  # Jalali 1369-01-01
    assert (sara["kind"], sara["lifecycle_stage"]) == ("lead", "lead")
    ani = await customer_by(db, "phone", "+98" + phone[1:])
    assert ani is not None and ani["last_name"] == "Պետրոսյան"
    events = await outbox_types(db, sara["id"])
    assert [type(e).__name__ for e in events] == ["CustomerRegistered"]
    assert events[0].source == "import" and list(events[0].customer.tags) == [
        "newsletter",
        "vip",
    ]

    # The report pages by whole rows.
    r = await client.get(
        f"/v1/customers/imports/{report['id']}", params={"limit": 3}, headers=VIEWER
    )
    page = r.json()
    assert [e["row"] for e in page["errors"]] == [3, 3, 3]
    assert page["errors_next_after_row"] == 3
    r = await client.get(
        f"/v1/customers/imports/{report['id']}", params={"after_row": 3}, headers=VIEWER
    )
    assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(4, "email")]
    assert r.json()["errors_next_after_row"] is None


async def test_rows_update_by_email_then_phone(client: httpx.AsyncClient, db: Database) -> None:
    mail, phone = f"{unique()}@example.com", new_phone()
    other_mail, other_phone = f"{unique()}@example.com", new_phone()
    first = csv_of(
        "email,phone,first_name,city",
        f"{mail},,Sara,Tehran",
        f"{other_mail},{other_phone},Other,Karaj",
    )
    r = await client.post("/v1/customers/imports", content=first, headers=CSV)
    assert r.json()["created"] == 2, r.text
    second = csv_of(
        "email,phone,city,custom.nothing",
        f"{mail.upper()},{phone},Shiraz,",  # found by email; gains the phone
        f",{persian(other_phone)},Karaj,",  # found by phone; nothing changes
        f"{mail},{other_phone},Tabriz,",  # email and phone of two files: refused
    )
    r = await client.post("/v1/customers/imports", content=second, headers=CSV)
    problem(r, 422)  # custom.nothing is no custom field
    assert r.json()["errors"][0]["pointer"] == "/body/header/custom.nothing"
    second = second.replace(b",custom.nothing", b"").replace(b",\r\n", b"\r\n")
    r = await client.post("/v1/customers/imports", content=second, headers=CSV)
    report = r.json()
    assert (report["created"], report["updated"], report["rejected_rows"]) == (0, 1, 1), report
    assert report["errors"] == [
        {
            "row": 3,
            "column": "phone",
            "message": "the email and the phone belong to two different customers",
        }
    ]
    sara = await customer_by(db, "phone", "+98" + phone[1:])
    assert sara is not None and sara["city"] == "Shiraz" and sara["first_name"] == "Sara"
    updated = (await outbox_types(db, sara["id"]))[-1]
    assert isinstance(updated, profile_pb2.CustomerUpdated)
    assert list(updated.changed_fields) == ["city", "phones"]
    other = await customer_by(db, "email", other_mail)
    assert other is not None and other["city"] == "Karaj"
    assert len(await outbox_types(db, other["id"])) == 1  # registered only: no change, no event


async def test_a_row_the_database_refuses_costs_only_itself(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A NUL character passes validation but PostgreSQL refuses it: the batch is replayed one
    row per savepoint, so its neighbour (same batch) is written and only it is reported."""
    good, refused = f"{unique()}@example.com", f"{unique()}@example.com"
    body = csv_of("email,first_name", f"{good},Good", f"{refused},Nul\x00Name")
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    report = r.json()
    assert (report["created"], report["rejected_rows"]) == (1, 1), report
    assert report["errors"][0]["row"] == 2 and "refused" in report["errors"][0]["message"]
    assert await customer_by(db, "email", good) is not None
    assert await customer_by(db, "email", refused) is None


async def test_an_interrupted_import_resumes_without_duplicates(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings
) -> None:
    assert isinstance(settings, Settings)
    mails = [f"{unique()}@example.com" for _ in range(7)]
    body = csv_of("email,first_name", *(f"{m},n{i}" for i, m in enumerate(mails)))
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    assert r.status_code == 202, r.text  # 7 rows > import_inline_rows: queued
    import_id = uuid.UUID(r.json()["id"])
    assert r.json()["status"] == "pending" and r.json()["processed_rows"] == 0

    # A processor applies one batch (two rows) and dies.
    await imports.run(db, import_id, settings=settings, max_batches=1)
    r = await client.get(f"/v1/customers/imports/{import_id}", headers=VIEWER)
    assert (r.json()["status"], r.json()["processed_rows"], r.json()["created"]) == (
        "running",
        2,
        2,
    )
    # The same file posted again is the same import, continued in the request (5 rows left).
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    assert r.status_code == 200 and r.json()["id"] == str(import_id)
    report = r.json()
    assert (report["status"], report["created"], report["processed_rows"]) == ("done", 7, 7)
    # Resuming a finished import does nothing.
    r = await client.post(f"/v1/customers/imports/{import_id}/resume", headers=MARKETER)
    assert r.status_code == 200 and r.json()["created"] == 7
    async with db.sessionmaker() as s:
        n = (
            await s.execute(
                text(
                    "SELECT count(*) FROM customer_identities WHERE kind = 'email' "
                    "AND value = ANY(:m)"
                ),
                {"m": mails},
            )
        ).scalar_one()
        registered = (
            await s.execute(
                text(
                    "SELECT count(*) FROM outbox o JOIN customer_identities i "
                    "ON o.key = i.customer_id::text WHERE i.value = ANY(:m)"
                ),
                {"m": mails},
            )
        ).scalar_one()
    assert (n, registered) == (7, 7)


async def test_two_runners_at_once_apply_each_row_once(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings
) -> None:
    assert isinstance(settings, Settings)
    mails = [f"{unique()}@example.com" for _ in range(9)]
    body = csv_of("email,city", *(f"{m},Tehran" for m in mails))
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    assert r.status_code == 202
    import_id = uuid.UUID(r.json()["id"])
    await asyncio.gather(
        imports.run(db, import_id, settings=settings),
        imports.run(db, import_id, settings=settings),
    )
    report = (await client.get(f"/v1/customers/imports/{import_id}", headers=VIEWER)).json()
    assert (report["status"], report["created"], report["updated"], report["rejected_rows"]) == (
        "done",
        9,
        0,
        0,
    )


async def test_oversized_and_unreadable_files(client: httpx.AsyncClient) -> None:
    big = csv_of("email,first_name", *(f"{unique()}@example.com,{'x' * 40}" for _ in range(100)))
    assert len(big) > 4096
    body = problem(await client.post("/v1/customers/imports", content=big, headers=CSV), 413)
    assert body["limit_bytes"] == 4096 and "4096 bytes" in body["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    body = problem(await client.post("/v1/customers/imports", content=chunks(), headers=CSV), 413)
    assert body["limit_bytes"] == 4096

    body = problem(
        await client.post(
            "/v1/customers/imports", content=b"email,shoe\r\na@b.co,1\r\n", headers=CSV
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/header/shoe"
    body = problem(
        await client.post("/v1/customers/imports", content=b"first_name\r\nx\r\n", headers=CSV),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/header/email"
    body = problem(
        await client.post(
            "/v1/customers/imports", content="email\r\nسارا".encode("utf-16"), headers=CSV
        ),
        422,
    )
    assert "UTF-8" in body["detail"]
    problem(await client.post("/v1/customers/imports", content=b"", headers=CSV), 422)
    problem(
        await client.post(
            "/v1/customers/imports",
            json={"email": "a@b.co"},
            headers=MARKETER,
        ),
        415,
    )
    problem(
        await client.post(
            "/v1/customers/imports",
            content=b"email\r\n",
            headers={**VIEWER, "content-type": "text/csv"},
        ),
        403,
    )
    problem(await client.get(f"/v1/customers/imports/{uuid.uuid4()}", headers=VIEWER), 404)


async def test_the_worker_takes_queued_imports(
    client: httpx.AsyncClient, db: Database, worker: asyncio.Event
) -> None:
    mails = [f"{unique()}@example.com" for _ in range(6)]
    body = csv_of("email", *mails)
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    assert r.status_code == 202
    import_id = r.json()["id"]

    async def done() -> dict[str, Any] | None:
        got = (await client.get(f"/v1/customers/imports/{import_id}", headers=VIEWER)).json()
        return got if got["status"] == "done" else None

    report = await eventually(done, what="the worker finishing the import")
    assert report["created"] == 6 and report["processed_rows"] == 6


async def test_an_export_reads_back_unchanged(client: httpx.AsyncClient, db: Database) -> None:
    tag = unique("rt-")
    body = csv_of(
        "email,phone,first_name,last_name,city,tags",
        f"{unique()}@example.com,{new_phone()},آرش,کمانگیر,اصفهان,{tag}",
        f"{unique()}@example.com,,Anahit,Սարգսյան,Gyumri,{tag}",
    )
    r = await client.post("/v1/customers/imports", content=body, headers=CSV)
    assert r.json()["created"] == 2
    exported = await client.get("/v1/customers/export", params={"tag": tag}, headers=VIEWER)
    assert exported.status_code == 200
    r = await client.post("/v1/customers/imports", content=exported.content, headers=CSV)
    report = r.json()
    assert (report["created"], report["updated"], report["rejected_rows"]) == (0, 0, 0), report
