"""The micro-batcher: concurrent submissions encoded together, each caller gets its own row,
an error reaches only the caller whose image caused it, and the queue is bounded."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hashret.encoder import Encoder
from hashret.models import create_model
from hashret.serve.batcher import MicroBatcher
from hashret.serve.errors import Busy


class Gated:
    """A real Encoder whose ``encode`` waits for ``gate`` (so a test knows what is queued while
    the model thread is busy); records the batch sizes it was given."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder, self.gate, self.entered = encoder, threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def encode(self, images):
        self.entered.set()
        assert self.gate.wait(10)
        self.sizes.append(len(images))
        return self.encoder.encode(images)


@pytest.fixture(scope="module")
def encoder():
    import torch

    torch.manual_seed(0)
    model = create_model("dlbhc", backbone="convnet-small", bits=16, num_classes=2, in_channels=1,
                         input_size=(12, 12)).eval()
    return Encoder(model, 16, (12, 12, 1), False, "fp32", "cpu", ("a", "b"))


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 12, 12, 1), dtype=np.uint8)


def busy_batcher(encoder, **kw) -> tuple[MicroBatcher, Gated, object]:
    """A batcher whose model thread is inside encode() with one image, waiting for the gate."""
    gated = Gated(encoder)
    b = MicroBatcher(gated, **kw)
    first = b.submit(images(1, seed=99)[0])
    assert gated.entered.wait(10)
    return b, gated, first


def test_waiting_submissions_are_encoded_together_and_routed_to_their_callers(encoder):
    b, gated, first = busy_batcher(encoder, window=0.0, max_batch=8)
    x = images(20)
    futures = [b.submit(im) for im in x]  # queued while the model is busy
    gated.gate.set()
    got = [f.result(10) for f in futures]
    assert gated.sizes == [1, 8, 8, 4]  # the first alone, then the 20 waiting, max_batch at a time
    ref = encoder.encode(x)
    for i, e in enumerate(got):
        assert np.array_equal(e.codes, ref.codes[i:i + 1])
        np.testing.assert_allclose(e.features, ref.features[i:i + 1], atol=1e-5)
    assert first.result(10).codes.shape == (1, 2) and (b.batches, b.encoded) == (4, 21)
    b.close()


def test_the_window_gathers_submissions_that_arrive_while_it_waits(encoder):
    b = MicroBatcher(encoder, window=2.0, max_batch=4)
    results: list = [None] * 4
    x = images(4)

    def client(i: int) -> None:
        results[i] = b.submit(x[i]).result(10)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert b.batches == 1  # max_batch reached: no need to wait out the 2 s window
    assert np.array_equal(np.concatenate([r.codes for r in results]), encoder.encode(x).codes)
    b.close()


def test_an_image_the_model_cannot_take_fails_alone(encoder):
    b, gated, _ = busy_batcher(encoder, window=0.0, max_batch=8)
    good = images(2)
    rgb = np.zeros((12, 12, 3), np.uint8)  # the model takes one channel
    fa, fbad, fb = b.submit(good[0]), b.submit(rgb), b.submit(good[1])
    gated.gate.set()
    with pytest.raises(ValueError, match="channel"):
        fbad.result(10)
    ref = encoder.encode(good)
    assert np.array_equal(fa.result(10).codes, ref.codes[:1])
    assert np.array_equal(fb.result(10).codes, ref.codes[1:])
    b.close()


def test_the_queue_is_bounded_and_a_cancelled_caller_is_skipped(encoder):
    b, gated, _ = busy_batcher(encoder, window=0.0, max_batch=8, max_pending=3)
    x = images(3)
    futures = [b.submit(im) for im in x]
    with pytest.raises(Busy) as e:
        b.submit(x[0])
    assert e.value.headers == {"Retry-After": "1"}
    assert futures[1].cancel()  # the client went away
    gated.gate.set()
    assert futures[0].result(10) is not None and futures[2].result(10) is not None
    assert gated.sizes == [1, 2] and b.encoded == 3
    b.submit(x[0]).result(10)  # room again once the queue drained
    b.close()
    with pytest.raises(RuntimeError, match="shut down"):
        b.submit(x[0])


def test_batch_encode_runs_on_the_model_thread_ahead_of_the_queue(encoder):
    b = MicroBatcher(encoder, max_batch=1)
    x = images(5)
    assert np.array_equal(b.encode(x).codes, encoder.encode(x).codes)
    with pytest.raises(ValueError, match="one image"):
        b.submit(x)
    b.close()
