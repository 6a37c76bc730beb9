"""The retrieval service: an HTTP API and a web page over an index (``hashret serve``)."""

from hashret.serve.app import create_app
from hashret.serve.limits import ServeLimits
from hashret.serve.retriever import Retriever, Upload
from hashret.serve.security import AccessPolicy, load_key
from hashret.serve.server import DEFAULT_HOST, DEFAULT_PORT, make_server, open_index, serve, uvicorn_config
from hashret.serve.sources import SourceView

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "AccessPolicy", "Retriever", "ServeLimits", "SourceView", "Upload",
           "create_app", "load_key", "make_server", "open_index", "serve", "uvicorn_config"]
