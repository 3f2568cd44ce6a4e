"""FastAPI app: search page, JSON API, health; the search service they share."""
