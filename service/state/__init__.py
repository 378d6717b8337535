"""Fathom's own state (keys, quotas, rate limits): SQLite under data_dir, or PostgreSQL shared by replicas."""
