"""`python -m vafa.loyalty reconcile`: the reconciliation as a command (for cron or a deploy
check). Prints the result as JSON; exits 1 when any account or lot disagrees, else 0.
Registered in spec.py as one of the service's operator commands (vafa.kit.cli)."""

from __future__ import annotations

import dataclasses
import json
import sys

from vafa.kit.db import Database
from vafa.kit.settings import ServiceSettings
from vafa.loyalty.points import service


async def reconcile(database_url: str) -> tuple[int, dict[str, object]]:
    db = Database(database_url, pool_size=1)
    try:
        async with db.sessionmaker() as session:
            result = await service.reconcile(session)
    finally:
        await db.dispose()
    body = dataclasses.asdict(result)
    code = 1 if result.mismatch_count or result.lot_mismatch_count else 0
    return code, body


async def command(settings: ServiceSettings, argv: list[str]) -> int:
    if argv:
        print("usage: python -m vafa.loyalty reconcile", file=sys.stderr)
        return 2
    code, body = await reconcile(settings.database_url)
    print(json.dumps(body, default=str, indent=2))
    return code
