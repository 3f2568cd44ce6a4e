"""FastAPI only: app factory, routers (api, ask, pages, auth, reviews), schemas, errors, presentation, static files. Searching and the review log live in retrieval/."""
