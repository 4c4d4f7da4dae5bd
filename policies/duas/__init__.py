"""Data use agreements (DUAs) of consumer organisations."""
