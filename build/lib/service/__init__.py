"""Fathom: self-hosted search middleware."""
