"""Metrics, calibration of min_similarity, benchmark sets and peer systems.

>>> truth = make_benchmark("photos", "bench", originals=100, distractors=200, tiles=4)
>>> evaluate_model("bench", load_model()).metrics.recall_at_p99
>>> evaluate_hash("bench", "phash").metrics.recall_at_p99
"""

from lookalike.evaluate.benchmark import make_benchmark, read_photo_list
from lookalike.evaluate.compare import EvaluationRun, check_systems, evaluate_systems
from lookalike.evaluate.metrics import (
    ScoreTally,
    calibrate_min_similarity,
    evaluate_pairs,
    recall_at_precision,
)
from lookalike.evaluate.payload import (
    JSON_SCHEMA,
    METRIC_KEYS,
    benchmark_counts,
    calibration_payload,
    evaluation_payload,
    model_payload,
    system_payload,
)
from lookalike.evaluate.peers import PEERS, PeerUnavailable, hash_files
from lookalike.evaluate.plots import PlotsUnavailable, plot_files, require_plotting, write_plots
from lookalike.evaluate.run import (
    CNN_SYSTEM,
    MODEL_SYSTEM,
    ResourceMonitor,
    calibrate_model,
    evaluate_hash,
    evaluate_model,
    evaluate_model_and_cnn,
)
from lookalike.evaluate.scoring import tally_pairs
from lookalike.evaluate.tables import comparison_table, families_table, print_table
from lookalike.evaluate.truth import BenchmarkError, load_truth, pair_layout

__all__ = [
    "CNN_SYSTEM",
    "JSON_SCHEMA",
    "METRIC_KEYS",
    "MODEL_SYSTEM",
    "PEERS",
    "BenchmarkError",
    "EvaluationRun",
    "PeerUnavailable",
    "PlotsUnavailable",
    "ResourceMonitor",
    "ScoreTally",
    "benchmark_counts",
    "calibrate_min_similarity",
    "calibrate_model",
    "calibration_payload",
    "check_systems",
    "comparison_table",
    "evaluate_hash",
    "evaluate_model",
    "evaluate_model_and_cnn",
    "evaluate_pairs",
    "evaluate_systems",
    "evaluation_payload",
    "families_table",
    "hash_files",
    "load_truth",
    "make_benchmark",
    "model_payload",
    "pair_layout",
    "plot_files",
    "print_table",
    "read_photo_list",
    "recall_at_precision",
    "require_plotting",
    "system_payload",
    "tally_pairs",
    "write_plots",
]
