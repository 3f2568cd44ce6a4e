"""The search engine in plain Python: query understanding, hybrid retrieval and ranking,
follow-up resolution and cited answers. The same service for the server, evals and the CLI;
nothing here imports FastAPI."""
