"""An app factory over the fake embedder, for browser tests that run uvicorn in a subprocess
without loading the real model: `uvicorn fake_model_app:create_app --factory` with tests/ on
PYTHONPATH. Settings come from the environment, as `medkb serve` passes them."""

from indexer.embedding import ModelInfo
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app as _create_app

from fakes import fake_for_encoder


def create_app():
    # The fake runs as MEDKB_ENCODER when the test sets it, else as torch, like the FakeEmbedder
    # that the tests build their indexes with (not as the real default encoder).
    return _create_app(Settings.from_env(), service_factory=lambda s: SearchService(load_index(s.index_dir, ModelInfo.of(fake_for_encoder())), fake_for_encoder()))
