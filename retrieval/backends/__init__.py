"""Where the chunks' vectors and BM25 statistics live and are searched: one interface
(`base.SearchBackend`), two implementations.

- `embedded` (the default): FAISS and bm25s in memory, over a build directory under the
  index root (indexer/index_store.py). One machine.
- `postgres`: PostgreSQL with pgvector (HNSW over the vectors, BM25 statistics in tables),
  builds published by switching one row in one transaction. Stateless server replicas.

Query understanding, the question-to-heading list, fusion and the learned ranker, no-match
and answers stay in retrieval/search.py above this interface, so both backends go through
the same code. Selected by MEDKB_BACKEND (embedded | postgres) and MEDKB_DATABASE_URL.
"""

BACKENDS = ("embedded", "postgres")
