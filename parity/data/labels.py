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


def class_names(dataset) -> list[str] | None:
    """The source's class names in label order (``classes``), looking through the harness's wrappers (Subset,
    ConcatDataset, the proxy's transcoding); None when the source names none."""
    for _ in range(8):  # wrappers nest a few deep at most
        if getattr(dataset, "classes", None):
            return [str(c) for c in dataset.classes]
        inner = getattr(dataset, "datasets", None)
        dataset = inner[0] if inner else getattr(dataset, "dataset", None)
        if dataset is None:
            return None
    return None


__all__ = ["class_names", "has_labels"]
