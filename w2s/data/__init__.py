"""Data: readers for messy files, the dataset registry."""
from w2s.data.readers import DataError, Example, read_examples
from w2s.data.registry import DATASETS, DatasetSpec, HoldOut, data_root, get_dataset, register_dataset

__all__ = ["DATASETS", "DataError", "DatasetSpec", "Example", "HoldOut", "data_root", "get_dataset",
           "read_examples", "register_dataset"]
