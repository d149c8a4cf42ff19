"""Property: API reservations combined into one unit of work (the combiner's path, refusals as
outcomes) decide and leave exactly what the same requests one transaction each would (refusals
rolled back): the same outcomes, levels, ledger, reservations and lines; never below zero."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.inventory.stock import batch, rules
from vafa.inventory.stock.rules import Adjust, InsufficientStock, Reserve
from vafa.kit.db import Database

T = 2
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)
# (sku, location, units) to start from; "U" is never known.
START = [("A", "default", 3), ("A", "p-second", 2), ("B", "default", 1), ("C", "p-second", 4)]

line = st.tuples(st.sampled_from(["A", "B", "C", "U"]), st.integers(1, 4))
request = st.tuples(
    st.sampled_from(["o1", "o2", "o3", "o4", "o5"]), st.lists(line, min_size=1, max_size=3)
)
requests = st.lists(request, min_size=1, max_size=12)


def commands(raw: list[tuple[str, list[tuple[str, int]]]]) -> list[Reserve]:
    return [
        Reserve(ref, rules.merge_lines(lines), EXPIRES, source="shop", strict=True, note="api")
        for ref, lines in raw
    ]


async def _setup(session: AsyncSession) -> None:
    await session.execute(
        text(
            "INSERT INTO locations (id, name, kind, priority) "
            "VALUES ('p-second', 'Second', 'store', 200) ON CONFLICT DO NOTHING"
        )
    )
    for i, (sku, loc, units) in enumerate(START):
        await batch.apply(
            session,
            [Adjust(loc, rules.RECEIPT, [(sku, units)], f"start:{i}", "t")],
            default_threshold=T,
        )


async def _state(session: AsyncSession) -> Any:
    q = {
        "levels": "SELECT sku, location_id, on_hand, reserved FROM stock_levels ORDER BY 1, 2",
        "items": "SELECT sku, on_hand, reserved, status FROM stock_items ORDER BY 1",
        "moves": "SELECT idempotency_key, delta, reserved_delta, reason FROM stock_movements "
        "WHERE idempotency_key NOT LIKE 'start:%' ORDER BY id",
        "reservations": "SELECT order_ref, state FROM reservations ORDER BY 1",
        "lines": "SELECT order_ref, sku, requested, allocated FROM reservation_lines ORDER BY 1, 2",
        "ledger": "SELECT sku, location_id, sum(delta), sum(reserved_delta) FROM stock_movements "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    }
    return {k: [tuple(r) for r in await session.execute(text(v))] for k, v in q.items()}


async def _run(db: Database, cmds: list[Reserve], *, combined: bool) -> tuple[list[Any], Any]:
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            await _setup(session)
            outcomes: list[Any] = []
            if combined:
                result = await batch.apply(session, cmds, default_threshold=T, refuse_softly=True)
                for o in result.outcomes:
                    refused = o.refused
                    outcomes.append(
                        ("refused", refused) if refused is not None else (o.changed, o.state)
                    )
            else:
                for c in cmds:
                    savepoint = await session.begin_nested()
                    try:
                        result = await batch.apply(session, [c], default_threshold=T)
                    except InsufficientStock as exc:
                        await savepoint.rollback()
                        outcomes.append(("refused", exc.shortages))
                    else:
                        await savepoint.commit()
                        o = result.outcomes[0]
                        outcomes.append((o.changed, o.state))
            return outcomes, await _state(session)
        finally:
            await session.close()
            await outer.rollback()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=requests)
async def test_combined_reservations_decide_as_one_at_a_time(
    db: Database, raw: list[tuple[str, list[tuple[str, int]]]]
) -> None:
    cmds = commands(raw)
    one_by_one = await _run(db, cmds, combined=False)
    combined = await _run(db, cmds, combined=True)
    assert combined[0] == one_by_one[0]
    state = combined[1]
    for key in ("levels", "items", "moves", "reservations", "lines"):
        assert state[key] == one_by_one[1][key], key
    assert all(on_hand >= 0 and reserved >= 0 for _, _, on_hand, reserved in state["levels"])
    assert [(s, loc, on_hand, reserved) for s, loc, on_hand, reserved in state["levels"]] == [
        (s, loc, int(d), int(r)) for s, loc, d, r in state["ledger"]
    ]
    # No claim of a refused request remains.
    assert all(st_ != "new" for _, st_ in state["reservations"])
