"""The runtime: the trainer, the run folder that owns a run's files, matrix plans and the executors
that run them (locally, on Ray, under torchrun), and exporting a run back to a source's format."""
