"""Metrics, calibration of min_similarity, benchmark sets and peer systems.

>>> truth = make_benchmark("photos", "bench", originals=100, distractors=200, tiles=4)
>>> evaluate_model("bench", load_model()).metrics.recall_at_p99
>>> evaluate_hash("bench", "phash").metrics.recall_at_p99
"""

from lookalike.evaluate.benchmark import (
    BenchmarkError,
    load_truth,
    make_benchmark,
    pair_layout,
    read_photo_list,
)
from lookalike.evaluate.metrics import (
    ScoreTally,
    calibrate_min_similarity,
    evaluate_pairs,
    recall_at_precision,
)
from lookalike.evaluate.peers import PEERS, PeerUnavailable, hash_files
from lookalike.evaluate.plots import PlotsUnavailable, plot_files, require_plotting, write_plots
from lookalike.evaluate.run import (
    MODEL_SYSTEM,
    ResourceMonitor,
    calibrate_model,
    evaluate_hash,
    evaluate_model,
)
from lookalike.evaluate.scoring import tally_pairs

__all__ = [
    "MODEL_SYSTEM",
    "PEERS",
    "BenchmarkError",
    "PeerUnavailable",
    "PlotsUnavailable",
    "ResourceMonitor",
    "ScoreTally",
    "calibrate_min_similarity",
    "calibrate_model",
    "evaluate_hash",
    "evaluate_model",
    "evaluate_pairs",
    "hash_files",
    "load_truth",
    "make_benchmark",
    "pair_layout",
    "plot_files",
    "read_photo_list",
    "recall_at_precision",
    "require_plotting",
    "tally_pairs",
    "write_plots",
]
