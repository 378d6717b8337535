"""Search analytics: search and click events, buffered in memory, written in batches, summarised."""
