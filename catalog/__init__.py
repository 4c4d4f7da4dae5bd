"""Catalog: the system of record for data products, and the kernel other packages plug into."""
