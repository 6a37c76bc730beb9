"""Evaluation: Hamming ranking, retrieval metrics, protocols, reports and plots."""

from hashret.eval.metrics import (
    average_precision_at_k,
    ideal_precision_at_k,
    mean_average_precision,
    precision_at_k,
    precision_within_radius,
)
from hashret.eval.plot import plot_precision_at_k
from hashret.eval.protocol import PROTOCOLS, Protocol, evaluate_codes, get_protocol
from hashret.eval.ranking import hamming_ranking, relevance
from hashret.eval.report import format_table, read_report, write_report

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "average_precision_at_k",
    "evaluate_codes",
    "format_table",
    "get_protocol",
    "hamming_ranking",
    "ideal_precision_at_k",
    "mean_average_precision",
    "plot_precision_at_k",
    "precision_at_k",
    "precision_within_radius",
    "read_report",
    "relevance",
    "write_report",
]
