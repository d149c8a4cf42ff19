"""Segmentation: Segments and the per-customer feature store (its features arrive with the segmentation issue)."""
