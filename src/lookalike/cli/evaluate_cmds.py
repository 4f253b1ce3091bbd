"""Commands that measure: make-benchmark, evaluate."""
