"""FastAPI only: app factory, routers (api, ask, pages), schemas, errors, presentation, static files. Searching lives in retrieval/."""
