"""Evaluation: metrics and references (``evaluate``), model summaries (parameters, FLOPs), tensor
comparison and the localiser that names the first submodule where two models part ways."""
