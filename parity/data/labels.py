"""Whether a dataset carries labels, looking through the wrappers the harness puts around sources."""

from __future__ import annotations


def has_labels(dataset) -> bool:
    """Whether items carry real labels (not -1), looking through Subset and ConcatDataset."""
    inner = getattr(dataset, "datasets", None)
    if inner is not None:  # ConcatDataset: labelled only if every part is
        return len(inner) > 0 and all(has_labels(d) for d in inner)
    if hasattr(dataset, "dataset") and hasattr(dataset, "indices"):  # Subset
        return has_labels(dataset.dataset)
    if hasattr(dataset, "labelled"):
        return bool(dataset.labelled)
    if hasattr(dataset, "targets"):
        return True
    if len(dataset) == 0:
        return False
    return int(dataset[0][1]) != -1  # an unknown dataset: look at one item


__all__ = ["has_labels"]
