"""Parse -> chunk -> embed -> write the index; importers for other formats.

Nothing heavy is imported here: the model and FAISS load only when a build or
a search asks for them.
"""
