"""What every ``mlgov`` sub-command needs, the kernel's and the domains' alike (``monitor.cli``): a kernel
module, so a domain's commands import it at the top instead of reaching into the composition root
(``mlgov.cli``, which imports them)."""

from __future__ import annotations

from mlgov import audit
from mlgov.db import Database, SchemaNotAtHead, check_at_head, private_dir
from mlgov.settings import get_settings
from mlgov.storage import open_store
from mlgov.terminal import CliError


def database(*, at_head: bool = True) -> Database:
    """The configured database, with the audit chain keyed and anchored as the server does it. Every command that
    reads or writes data opens it here (domain commands too); unless ``at_head`` is False, a database whose schema
    is not at this code's revision ends the command with the command that fixes it."""
    s = get_settings()
    embedded = s.home / "mlgov.db"
    if at_head and s.database_url is None and not embedded.exists():
        # before anything is created: a command run in the wrong directory leaves no state (and audit key) there
        raise CliError(f"no mlgov database here ({embedded.resolve()})",
                       fix="run the command where `mlgov db upgrade` (or `make run`) made one, or set MLGOV_HOME or "
                           "MLGOV_DATABASE_URL")
    private_dir(s.home)
    db = Database.from_settings(s)
    db.audit_chain = audit.chain_for(s, open_store(s))
    if at_head:
        try:
            check_at_head(db.engine)
        except SchemaNotAtHead as exc:
            raise CliError(str(exc)) from None
    return db
