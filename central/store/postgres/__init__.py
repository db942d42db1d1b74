"""PostgreSQL backend of the central store, for fleets that outgrow one SQLite file.

schema       the migrations (ordered SQL scripts) and what the layout is for
migrations   apply them (``cityedge central migrate``) and check the version on open
partitions   day partitions of readings, made ahead within a bounded window
values       a fleet scalar as typed columns
rollups      15-minute and daily rollups, and retention (bounded purge, whole days dropped)
writer       one write() group, one transaction (its statements: writer_sql; what it computes
             from a batch first: batch_facts; its COPY rows: copy_rows; the session's stage
             tables its rollups and latest values are merged from: stage)
reads, commands, auth   the other interfaces, as plain functions of a connection
store        ``PostgresStore``: the pool, errors as StoreError

Importing this package imports psycopg: only a postgresql:// URL does (``central.store.url``).
"""

from central.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
