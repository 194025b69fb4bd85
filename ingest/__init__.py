"""Dataset intake, in one place: user data (inline JSON, base64, .npz/.npy/.csv files,
built-in sample sets) becomes validated arrays, checked against the limits, and the arrays
become the bytes the store keeps. Imports numpy only (scikit-learn for the sample sets).

A dataset is ``inputs`` (one entry per sample) and ``targets``: head name -> array. A
dataset with one unnamed target list has the single head ``DEFAULT_HEAD``.
"""
from ingest.errors import IngestError
from ingest.heads import DEFAULT_HEAD, DatasetFacts, head_info

__all__ = ["DEFAULT_HEAD", "DatasetFacts", "IngestError", "head_info"]
