"""Privacy: export everything held; erasure anonymises the file, keeps order amounts, and
publishes CustomerErased."""

import uuid

import httpx
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers

from .test_api import MARKETER, VIEWER, assert_problem
from .test_file import customer_events, new_customer
from .test_merge import paid_order, rich_pair

ADMIN = principal_headers("staff", "root", "admin")


async def test_export_holds_everything(client: httpx.AsyncClient, db: Database) -> None:
    a, _ = await rich_pair(client, db)
    r = await client.get(f"/v1/customers/{a}/export", headers=VIEWER)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == f'attachment; filename="customer-{a}.json"'
    data = r.json()
    assert data["customer"]["id"] == a and data["customer"]["province"] == "Tehran"
    for part in (
        "identities",
        "orders",
        "timeline",
        "tags",
        "notes",
        "effective_dates",
        "consents",
        "consent_history",
    ):
        assert data[part], part
    assert {t["tag"] for t in data["tags"]} == {"vip", "early"}
    assert data["orders"][0]["total_minor"] > 0


async def test_erasure_anonymises_the_file(client: httpx.AsyncClient, db: Database) -> None:
    a, _ = await rich_pair(client, db)
    before = (await client.get(f"/v1/customers/{a}", headers=VIEWER)).json()
    mail = before["identities"]["emails"][0]
    assert_problem(await client.post(f"/v1/customers/{a}/erasure", headers=MARKETER), 403)
    r = await client.post(f"/v1/customers/{a}/erasure", headers=ADMIN)
    assert r.status_code == 200, r.text
    erased = r.json()
    assert erased["erased_at"] is not None
    assert (erased["first_name"], erased["last_name"], erased["city"], erased["province"]) == (
        None,
        None,
        None,
        None,
    )
    assert erased["identities"] == {"emails": [], "phones": [], "shop_ids": []}
    assert erased["tags"] == [] and erased["effective_dates"] == [] and erased["consents"] == []
    assert erased["custom_fields"] == {}
    # The books keep the amounts.
    assert (
        erased["total_spend"] == before["total_spend"]
        and erased["order_count"] == before["order_count"]
    )
    assert all(e["summary"] == "Erased." for e in erased["timeline"])
    order_entry = next(e for e in erased["timeline"] if e["kind"].startswith("order."))
    assert set(order_entry["data"]) <= {"order_ref", "total_minor", "currency", "refund"}
    assert (await client.get(f"/v1/customers/{a}/notes", headers=VIEWER)).json() == []
    assert_problem(
        await client.get("/v1/customers/lookup", params={"email": mail}, headers=VIEWER), 404
    )
    async with db.sessionmaker() as s:
        dump = await s.scalar(
            text(
                "SELECT concat(to_jsonb(c)::text, (SELECT jsonb_agg(t.data)::text FROM timeline_entries t"
                " WHERE t.customer_id = c.id)) FROM customers c WHERE id = :id"
            ),
            {"id": uuid.UUID(a)},
        )
    assert mail not in dump and "Sara" not in dump and "Tehran" not in dump

    erased_events = [
        m for m in await customer_events(db, a) if isinstance(m, profile_pb2.CustomerErased)
    ]
    assert len(erased_events) == 1 and erased_events[0].customer_id == a
    assert_problem(await client.post(f"/v1/customers/{a}/erasure", headers=ADMIN), 409)
    # An erased file takes no more changes.
    assert_problem(
        await client.patch(f"/v1/customers/{a}", json={"first_name": "Sara"}, headers=MARKETER),
        409,
    )
    assert_problem(
        await client.post(
            f"/v1/customers/{a}/identities", json={"kind": "email", "value": mail}, headers=MARKETER
        ),
        409,
    )
    # The person may come back: a new order with the old email opens a new file.
    assert str(await paid_order(db, email=mail)) != a


async def test_a_merge_cannot_be_undone_after_erasure(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b = await new_customer(client), await new_customer(client)
    merge = (
        await client.post(
            f"/v1/customers/{a['id']}/merge", json={"merged_id": b["id"]}, headers=MARKETER
        )
    ).json()
    # The merged id is not a file any more: erase the survivor.
    assert_problem(await client.post(f"/v1/customers/{b['id']}/erasure", headers=ADMIN), 404)
    assert (await client.post(f"/v1/customers/{a['id']}/erasure", headers=ADMIN)).status_code == 200
    ledger = (await client.get(f"/v1/merges/{merge['id']}", headers=VIEWER)).json()
    assert ledger["survivor_before"] == {"erased": True} == ledger["merged_before"]
    body = assert_problem(
        await client.post(f"/v1/merges/{merge['id']}/unmerge", headers=ADMIN), 409
    )
    assert "erased" in body["detail"]
