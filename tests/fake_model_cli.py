"""The `medkb` command line with the fake embedder in place of the packaged model, for fast-tier
tests that run the CLI as a real process: `python tests/fake_model_cli.py index ...`. The fake
claims to run as the encoder it is asked for (MEDKB_ENCODER, default torch), as the real model would."""

import os
import sys

# Unless the test asks for an encoder, the fake runs as torch, like the FakeEmbedder that tests build
# their indexes with in-process (the real default encoder would make those indexes "another encoder's").
os.environ.setdefault("MEDKB_ENCODER", "torch")

import indexer.embedding as embedding
from indexer.embedding import ModelInfo

from fakes import FakeEmbedder, fake_for_encoder

embedding.load_embedder = lambda model_dir=None, encoder=None, **_: fake_for_encoder(encoder)
embedding.model_checksum = lambda path: FakeEmbedder.checksum
embedding.model_identity = lambda model_dir=None, encoder=None: ModelInfo.of(fake_for_encoder(encoder))
embedding.load_token_counter = lambda model_dir=None: FakeEmbedder().count_tokens

if __name__ == "__main__":
    from medkb.cli import main

    sys.exit(main(sys.argv[1:]))
