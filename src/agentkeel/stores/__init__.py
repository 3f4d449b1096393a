"""Stores: where journals live. Chosen by URL (``open_store``)."""
