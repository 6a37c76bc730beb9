"""The retrieval service: an HTTP API and a web page over an index (``hashret serve``)."""

from hashret.serve.app import create_app
from hashret.serve.retriever import Retriever, Upload
from hashret.serve.server import DEFAULT_HOST, DEFAULT_PORT, open_index, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Retriever", "Upload", "create_app", "open_index", "serve"]
