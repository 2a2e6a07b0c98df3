"""Blob storage for output files, and the signed links that serve them."""
