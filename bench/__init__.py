"""Benchmarks of the feed: latency (``bench.feed_latency``) and simulated online evaluation
(``bench.online_eval``). Each runs with one command and writes ``bench/results/<name>.json``;
see bench/README.md and docs/benchmarks.md."""
