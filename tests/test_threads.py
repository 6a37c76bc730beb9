"""Thread choice on a shared CPU (``hashret.threads``)."""

import pytest

from hashret.threads import choose_threads


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.0, 2),   # idle: every core
    (2, 0.4, 2),   # round(1.6)
    (2, 0.6, 1),   # round(1.4): one core is mostly someone else's
    (2, 2.0, 1),   # loaded: one thread, never zero
    (2, 11.0, 1),
    (16, 4.2, 12),
])
def test_free_cores_by_load(monkeypatch, cores, load, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(None, cores=cores, load=load) == expected


def test_explicit_choices_win(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(None, cores=2, load=9.0) == 3  # the user's environment
    assert choose_threads(1, cores=2, load=0.0) == 1      # --threads 1
    assert choose_threads(0, cores=2, load=9.0) == 2      # --threads 0: every core


def test_bad_values_are_explained(monkeypatch):
    with pytest.raises(ValueError, match="--threads -1"):
        choose_threads(-1)
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='two' is not a whole number"):
        choose_threads(None)
