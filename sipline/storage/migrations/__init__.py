"""Versioned schema migrations, applied in order by ``sipline.storage.schema``.

A migration is a file named ``NNN_what.sql`` (portable SQL) or ``NNN_what.py``
(``async def upgrade(tx, dialect)`` for what SQL alone cannot do). When one
dialect needs different SQL, ``NNN_what.mysql.sql`` or ``NNN_what.sqlite.sql``
replaces ``NNN_what.sql`` for that dialect only.

Portable SQL: statements end with ``;`` at the end of a line; ``--`` starts a
comment; neither may appear inside a string literal. Types are those both
engines know (VARCHAR(n), INTEGER, BIGINT, DOUBLE, TEXT); timestamps are UTC
seconds since the epoch (DOUBLE), compared with ``time.time()``. Name indexes
and constraints ``<table>_<columns>``: SQLite index names are database-wide.
Where the dialects differ, a placeholder stands in:

``{id}``             the surrogate key column: an auto-incremented primary key
``{table_options}``  after a CREATE TABLE: InnoDB, utf8mb4, binary collation
                     (case-sensitive, byte-wise comparison, as SQLite does)
``{ascii}``          after a VARCHAR: one byte per character on MySQL, for
                     escaped SIP URIs whose long keys would not fit an index

Never edit a migration that has been released: add the next number.
"""
