"""The worker's part of CSV imports: large files, and imports whose processor died."""

from vafa.kit.worker import WorkerContext
from vafa.profile.config import Settings
from vafa.profile.imports import service

# A running import idle this long lost its processor (each batch takes well under this).
STALE_SECONDS = 60.0


async def import_pending(ctx: WorkerContext) -> None:
    """Runs waiting imports one after another until none is left."""
    settings = ctx.settings
    assert isinstance(settings, Settings)
    while (import_id := await service.claim_next(ctx.db, stale_seconds=STALE_SECONDS)) is not None:
        await service.run(ctx.db, import_id, settings=settings)
