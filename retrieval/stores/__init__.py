"""Where medkb's shared state lives: one small connection layer under every store.

The stores (conversations, answers and feedback, accounts, the review log) write plain SQL
with `?` placeholders against a `Connection` from `open_database(where, ...)`:

- a path (or `SQLiteDatabase`): a SQLite file, one connection per use, WAL journal; the
  embedded default for one machine;
- a `postgresql://` URL (or `PostgresDatabase`): a PostgreSQL database shared by every
  server process, so replicas are stateless; connections come from a pool per URL.

Each store keeps one schema per dialect (`Schema`); everything above the connection
(bounds, fault tolerance, rules) is the same code for both.
"""

from retrieval.stores.database import CONNECT_TIMEOUT, Connection, Database, Schema, is_database_url, open_database

__all__ = ["CONNECT_TIMEOUT", "Connection", "Database", "Schema", "is_database_url", "open_database"]
