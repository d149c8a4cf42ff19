"""Segmentation: the per-customer feature store kept from events, segments with their members
and history, RFM, lifetime value (BG/NBD + Gamma-Gamma) and k-means discovery."""
