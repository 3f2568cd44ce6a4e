"""The `medkb` command line with the fake embedder in place of the packaged model, for fast-tier
tests that run the CLI as a real process: `python tests/fake_model_cli.py index ...`."""

import sys

import indexer.embedding as embedding
from indexer.embedding import ModelInfo

from fakes import FakeEmbedder

embedding.load_embedder = lambda model_dir=None: FakeEmbedder()
embedding.model_checksum = lambda path: FakeEmbedder.checksum
embedding.model_identity = lambda model_dir=None: ModelInfo.of(FakeEmbedder())
embedding.load_token_counter = lambda model_dir=None: FakeEmbedder().count_tokens

if __name__ == "__main__":
    from medkb.cli import main

    sys.exit(main(sys.argv[1:]))
