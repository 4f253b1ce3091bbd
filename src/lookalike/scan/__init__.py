"""Files -> embeddings -> pairs -> groups -> keepers; quarantine and restore; leak checks.

>>> result = scan_folder("photos", index="photos.lookalike")
>>> quarantine("photos.lookalike", to="quarantine", dry_run=True).done
"""

from lookalike.scan.cleanup import quarantine, read_manifest, restore
from lookalike.scan.demo import write_demo_folder
from lookalike.scan.groups import GroupPlan, build_groups
from lookalike.scan.keepers import KEEP_POLICIES, KEEP_REASONS, Candidate, choose_keeper
from lookalike.scan.leaks import find_leaks
from lookalike.scan.oneshot import find_duplicates
from lookalike.scan.query import find_lookalikes
from lookalike.scan.run import resolve_thresholds, scan_folder
from lookalike.scan.stored import read_result, regroup
from lookalike.scan.walk import ScanError, content_hash

__all__ = [
    "KEEP_POLICIES",
    "KEEP_REASONS",
    "Candidate",
    "GroupPlan",
    "ScanError",
    "build_groups",
    "choose_keeper",
    "content_hash",
    "find_duplicates",
    "find_leaks",
    "find_lookalikes",
    "quarantine",
    "read_manifest",
    "read_result",
    "regroup",
    "resolve_thresholds",
    "restore",
    "scan_folder",
    "write_demo_folder",
]
