"""The HTTP API's request and response bodies (pydantic), so the OpenAPI schema is complete."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every error the API returns: what is wrong and how to fix it."""

    detail: str = Field(description="what is wrong, in words")
    status: int = Field(description="the HTTP status code, repeated")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="per-field problems of a request that failed validation (422)")


class QueryCode(BaseModel):
    """The binary code a query was searched with."""

    id: int | None = Field(description="the indexed item searched by, or null for an uploaded image")
    bits: int = Field(description="code length")
    code: str = Field(description="the code as '0'/'1' characters, bit 0 first (hashret.codes convention)")
    code_hex: str = Field(description="the packed code bytes (LSB-first packing) as hexadecimal")


class Item(BaseModel):
    """An indexed item and where to fetch its stored image."""

    id: int
    label: int = Field(description="class index, -1 when unknown")
    class_name: str | None = Field(description="class name, null when unknown")
    source: str = Field(description="where the image came from (a dataset reference, a file, an upload)")
    extra: dict[str, Any] = Field(default_factory=dict, description="any further stored fields")
    url: str = Field(description="this item's URL (GET)")
    image_url: str | None = Field(description="URL of the index's stored copy of the image, or null "
                                              "when the index keeps none")


class Hit(Item):
    """One search result."""

    rank: int = Field(description="1 = nearest")
    hamming: int = Field(description="Hamming distance between the query's code and the item's")
    euclidean: float | None = Field(description="Euclidean distance between the float features "
                                                "(null unless the search re-ranked)")


class SearchResponse(BaseModel):
    """The k nearest items of one query, nearest first."""

    query: QueryCode
    k: int
    rerank: bool = Field(description="whether the Hamming candidates were re-ranked by Euclidean "
                                     "distance on the float features (hierarchical search)")
    results: list[Hit]
    notes: list[str] = Field(default_factory=list, description=(
        "what was changed to fit an uploaded image to the model's input (turned upright, "
        "transparency shown on white, converted to grey, resized, ...); empty when nothing was"))
    took_ms: float = Field(description="server time for decoding, encoding and searching")


class AddResponse(BaseModel):
    """Items added in one commit."""

    ids: list[int]
    items: list[Item]
    count: int = Field(description="items in the index after the add")


class Health(BaseModel):
    status: str = Field(description="'ok' while the index is open")
    items: int = Field(description="items as of the last index state loaded")


class Stats(BaseModel):
    """What the server searches."""

    items: int = Field(description="live items")
    bits: int = Field(description="code length")
    engine: str = Field(description="what keeps the collection: 'directory' (an index directory) or 'milvus'")
    backend: str = Field(description="Hamming search backend")
    model: dict[str, Any] = Field(description="the model that made the codes: sha256, method, backbone, "
                                              "classes, input image shape")
    feature_storage: str | None = Field(description="how re-rank features are kept (None: not kept)")
    generation: int | None = Field(description="commit number of the loaded index state (an index "
                                               "directory; None for Milvus)")
    writable: bool = Field(description="whether POST /items can add to the index (with the write key)")
    max_k: int
    max_upload_bytes: int
    read_key: bool = Field(description="whether reads need the read key")
    encoder: dict[str, Any] = Field(default_factory=dict, description=(
        "how uploads are encoded: runtime (torch or onnx), precision, max_batch, batch_window_ms; "
        "batches and encoded so far (their ratio is the mean batch)"))
    searches: dict[str, int] = Field(default_factory=dict, description=(
        "searches so far by where they ran: 'event_loop' (quick ones, the store free) or "
        "'worker_thread'"))
    refused: dict[str, int] = Field(default_factory=dict,
                                    description="requests and connections refused so far, by reason")
