"""Storage: the system of record (docs/design.md "State"), on MySQL/MariaDB or embedded SQLite.

db = await open_database(settings.database.url)
await migrate(db)
subscribers = Subscribers(db)
"""

from sipline.storage.database import (
    Database,
    IntegrityError,
    InvalidValue,
    Queries,
    Row,
    StorageError,
    open_database,
)
from sipline.storage.schema import (
    SchemaOutdated,
    migrate,
    pending,
    prepare_schema,
    require_current_schema,
)
from sipline.storage.subscribers import (
    DuplicateSubscriber,
    InvalidAor,
    Subscriber,
    Subscribers,
    UnknownSubscriber,
    parse_aor,
)

__all__ = [
    "Database",
    "DuplicateSubscriber",
    "IntegrityError",
    "InvalidAor",
    "InvalidValue",
    "Queries",
    "Row",
    "SchemaOutdated",
    "StorageError",
    "Subscriber",
    "Subscribers",
    "UnknownSubscriber",
    "migrate",
    "open_database",
    "parse_aor",
    "pending",
    "prepare_schema",
    "require_current_schema",
]
