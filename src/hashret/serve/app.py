"""The HTTP app: search by image or by item, item lookup and images, add, health, stats, and
the web page, over a :class:`hashret.serve.retriever.Retriever`.

The app is thin: every route validates its parameters, calls the retriever, and turns the
result into a response model of :mod:`hashret.serve.schemas` (so ``/openapi.json`` describes
every request and response, and a client can be generated from it). Errors are JSON
(:mod:`hashret.serve.errors`).

Around the routes, outermost first: the per-client rate limit (:mod:`hashret.serve.ratelimit`),
the Host allow-list, cross-site checks and keys (:mod:`hashret.serve.security`), and the
body-size limit (:mod:`hashret.serve.limits`); uploads are decoded and encoded by a
bounded queue (:mod:`hashret.serve.workqueue`) and encoded, several concurrent uploads in one
forward pass, by one model thread (:mod:`hashret.serve.batcher`). Small PNG uploads are decoded,
and quick searches run, on the event loop itself (no thread hop; see :data:`INLINE_DECODE_BYTES`
and :meth:`hashret.serve.retriever.Retriever.search_encoded`). Connection deadlines live in the
server's protocol (:mod:`hashret.serve.connections`, see :func:`hashret.serve.server.uvicorn_config`).

    app = create_app(store, load_index_model(store))   # read-only, loopback names only
    app = create_app(store, model, access=AccessPolicy(write_key=key))   # POST /items with the key
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run
# time, and `k`'s bound (max_k) is a local of create_app.
import asyncio
import re
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from hashret import __version__
from hashret.encoder import Encoder
from hashret.serve.errors import BadRequest, install_error_handlers
from hashret.serve.limits import BodySizeLimit, ServeLimits
from hashret.serve.logs import RefusalLog
from hashret.serve.ratelimit import RateLimit, TokenBuckets
from hashret.serve.retriever import Outcome, Retriever, Upload, code_strings
from hashret.serve.schemas import (
    AddResponse,
    ErrorResponse,
    Health,
    Hit,
    Item,
    QueryCode,
    SearchResponse,
    Stats,
)
from hashret.serve.security import AccessControl, AccessPolicy
from hashret.serve.sources import SourceView
from hashret.serve.workqueue import WorkQueue
from hashret.store import Collection

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Default largest k a search may ask for.
DEFAULT_MAX_K = 1000
#: Default largest Hamming candidate pool a search may ask for.
DEFAULT_MAX_CANDIDATES = 20000
#: Largest number of images one POST /items may add.
DEFAULT_MAX_ADD_FILES = 64
#: Bytes of an upload read to check its declared size before it is queued.
_HEADER_BYTES = 256 << 10
#: Uploads decoded on the event loop instead of a worker thread: PNG files (their decode costs in
#: proportion to their bytes and pixels) of at most this many bytes and pixels, which decode in
#: well under a millisecond (0.03 ms for a 28x28 digit, 0.3 ms for 128x128 RGBA noise), less than
#: the hop to a thread and back.
INLINE_DECODE_BYTES = 64 << 10
INLINE_DECODE_PIXELS = 128 * 128
#: A quick search that finds the store busy tries again on the event loop every millisecond for
#: this long before it goes to a worker thread: the store is mostly held by a search on a worker
#: thread, which needs the loop to let go of the interpreter (GIL) to finish; sending the next
#: searches to threads too would keep the store busy from then on.
STORE_WAIT_SECONDS = 0.05

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in {
        400: "an upload that is empty, not an image, or truncated; a Host the server does not serve",
        401: "the route needs a key and none was sent (Authorization: Bearer KEY)",
        403: "wrong key, a cross-site browser request, or a write to a read-only server",
        404: "unknown or removed item",
        413: "request body or image over the size or decode-memory limit",
        422: "invalid parameters (k out of range, an id that is not a number, ...)",
        429: "too many requests from this client (see Retry-After)",
        503: "the decode or encode queue is full (see Retry-After)",
    }.items()
}
# The page is served with this policy: only its own scripts, styles and images (plus the
# object URLs of the image the user picked).
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
             "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_NAME_CHARS = re.compile(r"[^\w.\- ()\[\]+,@]")


def _clean_name(name: str | None) -> str:
    """An upload's file name as stored text: printable, at most 200 characters, never a path."""
    base = (name or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return _NAME_CHARS.sub("_", base)[:200] or "upload"


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return "application/octet-stream"


def _decode_here(header: tuple[str, int, int] | None, size: int) -> bool:
    """Whether an upload of ``size`` bytes whose header declares ``(format, width, height)`` is
    decoded on the event loop (:data:`INLINE_DECODE_BYTES`, :data:`INLINE_DECODE_PIXELS`)."""
    return (header is not None and header[0] == "PNG" and size <= INLINE_DECODE_BYTES
            and header[1] * header[2] <= INLINE_DECODE_PIXELS)


def create_app(store: Collection, model: Encoder, *, limits: ServeLimits | None = None,
               access: AccessPolicy | None = None, sources: SourceView | None = None,
               max_k: int = DEFAULT_MAX_K, max_candidates: int = DEFAULT_MAX_CANDIDATES,
               max_add_files: int = DEFAULT_MAX_ADD_FILES, refresh_seconds: float = 2.0,
               query_encoder: Any = None) -> FastAPI:
    """The retrieval service over an open index and its model.

    Args:
        store: an open index; ``POST /items`` needs it open writable and ``access`` to hold
            a write key (otherwise that route answers 403). The app does not close it.
        model: the index's model (:func:`hashret.indexing.load_index_model`).
        limits: the resource bounds (:class:`ServeLimits`; default: its defaults). The
            connection deadlines and cap apply when served by
            :func:`hashret.serve.server.uvicorn_config`.
        access: keys and allowed hosts (default: read-only, no read key, loopback names).
        sources: how items' sources are shown (default: file names, not server paths).
        max_k: largest ``k`` a search may ask for (422 above it).
        max_candidates: largest coarse-stage pool (``candidates``) a search may ask for.
        max_add_files: most images one ``POST /items`` may add (422 above it).
        refresh_seconds: a read-only index picks up other processes' commits this often.
        query_encoder: encodes uploaded queries instead of ``model`` (an
            :class:`hashret.onnx_encoder.OnnxEncoder` of it); adds are encoded by ``model``.

    Returns:
        a FastAPI app; serve it with :func:`hashret.serve.server.uvicorn_config`.
    """
    limits = limits or ServeLimits()
    access = access or AccessPolicy()
    show = sources or SourceView()
    refusals = RefusalLog(limits.log_interval)
    retriever = Retriever(store, model, max_pixels=limits.max_pixels,
                          max_decoded_bytes=limits.max_decoded_bytes, refresh_seconds=refresh_seconds,
                          query_encoder=query_encoder, batch_window=limits.batch_window,
                          max_batch=limits.max_batch, max_pending=limits.encode_queue)
    work = WorkQueue(limits.decode_workers, limits.decode_queue)
    app = FastAPI(
        title="hashret retrieval service", version=__version__,
        description=("Query-by-image over a hashret index: deep binary hash codes searched by Hamming "
                     "distance, optionally re-ranked by Euclidean distance on the float features "
                     "(hierarchical search). Every error is JSON: {detail, status}."),
    )
    app.state.retriever, app.state.limits, app.state.refusals = retriever, limits, refusals
    app.state.access, app.state.work = access, work
    # add_middleware puts each one outside the ones before it: the last added runs first
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes, on_refuse=refusals.note)
    app.add_middleware(AccessControl, policy=access, on_refuse=refusals.note)
    if limits.rate > 0:  # outermost: key guesses and bad hosts count against a client's rate too
        app.add_middleware(RateLimit, buckets=TokenBuckets(limits.rate, limits.burst),
                           on_refuse=refusals.note)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def precheck(f: UploadFile) -> tuple[str, int, int] | None:
        """Refuse an upload over the pixel / memory limits from its header, before it is queued;
        returns the header's ``(format, width, height)`` (None: it did not parse)."""
        head = await f.read(_HEADER_BYTES)
        await f.seek(0)
        return retriever.precheck(Upload(head, _clean_name(f.filename)))

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def item_model(request: Request, d: dict[str, Any]) -> dict[str, Any]:
        url = f"{base(request)}/items/{d['id']}"
        return {**{k: v for k, v in d.items() if k != "has_image"}, "source": show(d["source"]), "url": url,
                "image_url": f"{url}/image" if d["has_image"] else None}

    async def searched(method: Any, query: Any, **kw: Any) -> Outcome:
        """``method(query, **kw)`` (a retriever search) on the event loop when it is quick and the
        store is free (waiting up to :data:`STORE_WAIT_SECONDS` for it), else on a worker thread."""
        deadline = time.monotonic() + STORE_WAIT_SECONDS
        while retriever.quick(kw["k"], kw.get("candidates"), kw.get("radius")):
            out = method(query, now=True, **kw)
            if out is not None:
                return out
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.001)  # the store is busy: let the thread holding it finish
        return await run_in_threadpool(method, query, **kw)

    def search_response(request: Request, out: Outcome, k: int, rerank: bool) -> SearchResponse:
        bits, hexa = code_strings(out.code, store.bits)
        return SearchResponse(
            query=QueryCode(id=out.query_id, bits=store.bits, code=bits, code_hex=hexa), k=k, rerank=rerank,
            results=[Hit(**item_model(request, h)) for h in out.hits], notes=out.notes,
            took_ms=round(out.took_ms, 3))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        headers = {"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"}
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)

    @app.get("/health", response_model=Health, tags=["service"], summary="Liveness and item count")
    async def health() -> Health:  # on the event loop, never waits for the store or a worker thread
        return Health(status="ok", items=retriever.count_nowait())

    @app.get("/stats", response_model=Stats, tags=["service"],
             summary="What is served: items, bits, model, backend, limits, refusals so far")
    def stats() -> Stats:
        s = retriever.stats()
        s["writable"] = bool(s["writable"] and access.writable)
        return Stats(**s, max_k=max_k, max_upload_bytes=limits.max_upload_bytes,
                     read_key=access.read_protected, refused=refusals.counts())

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, tags=["search"],
              summary="The k items nearest to an uploaded image or to an indexed item")
    async def search(
        request: Request,
        image: Annotated[UploadFile | None, File(description="query image (PNG, JPEG, ...)")] = None,
        id: Annotated[int | None, Form(ge=0, description="search by this indexed item instead")] = None,  # noqa: A002
        k: Annotated[int, Form(ge=1, le=max_k, description="results wanted")] = 10,
        rerank: Annotated[bool, Form(description="re-rank the Hamming candidates by Euclidean "
                                                 "distance on the float features")] = False,
        candidates: Annotated[int | None, Form(ge=1, le=max_candidates, description=(
            "coarse stage: the top-N items by Hamming distance (ties by id); default k, or "
            "max(k, 1000) with rerank"))] = None,
        radius: Annotated[int | None, Form(ge=0, le=store.bits, description=(
            "coarse stage: every item within this Hamming distance, instead of candidates"))] = None,
    ) -> SearchResponse:
        if (image is None) == (id is None):
            raise BadRequest("give exactly one of 'image' (an uploaded file) or 'id' (an indexed item)")
        if candidates is not None and radius is not None:
            raise BadRequest("give at most one of 'candidates' and 'radius' (the coarse stage's pool)")
        pool = {"candidates": candidates, "radius": radius}
        if image is not None:
            header = await precheck(image)
            notes: list[str] = []
            async with work.slot():  # admitted (or 503) before the upload is read into memory
                t0 = time.perf_counter()
                upload = Upload(await image.read(), _clean_name(image.filename))
                if _decode_here(header, len(upload.data)):
                    pixels = retriever.decode(upload, notes)
                else:
                    pixels = await run_in_threadpool(retriever.decode, upload, notes)
            # encoded on the model thread with other uploads waiting then (503 if too many wait)
            encoded = await asyncio.wrap_future(retriever.encode_query(pixels))
            out = await searched(retriever.search_encoded, encoded, k=k, rerank=rerank, notes=notes,
                                 started=t0, **pool)
        else:
            out = await searched(retriever.search_id, int(id), k=k, rerank=rerank, **pool)
        return search_response(request, out, k, rerank)

    @app.get("/items/{item_id}", response_model=Item, responses=_ERRORS, tags=["items"],
             summary="An indexed item's metadata")
    def get_item(request: Request, item_id: Annotated[int, PathParam(ge=0)]) -> Item:
        return Item(**item_model(request, retriever.item(item_id)))

    @app.get("/items/{item_id}/image", responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}},
              "description": "the index's stored copy of the image"}, **_ERRORS},
             response_class=Response, tags=["items"], summary="An indexed item's stored image")
    def get_item_image(item_id: Annotated[int, PathParam(ge=0)]) -> Response:
        data = retriever.item_image(item_id)
        return Response(data, media_type=_image_type(data),
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.post("/items", response_model=AddResponse, status_code=201, tags=["items"], responses={
        **_ERRORS, 507: {"model": ErrorResponse, "description": "the disk is full; nothing was added"}},
              summary="Add uploaded images to the index (one commit: all or none; needs the write key)")
    async def add_items(
        request: Request,
        images: Annotated[list[UploadFile], File(description="image files to add")],
        label: Annotated[str | None, Form(max_length=200, description="class name of every image")] = None,
    ) -> AddResponse:
        if len(images) > max_add_files:
            raise BadRequest(f"{len(images)} images in one request; at most {max_add_files}: split them")
        for f in images:
            await precheck(f)
        async with work.slot():
            uploads = [Upload(await f.read(), _clean_name(f.filename)) for f in images]
            ids = await run_in_threadpool(retriever.add, uploads, label=label or None)
        described = await run_in_threadpool(lambda: [retriever.item(i) for i in ids])
        items = [Item(**item_model(request, d)) for d in described]
        return AddResponse(ids=ids, items=items, count=retriever.count_nowait())

    return app
