"""The experiment layer: what an experiment is (the typed configuration, presets, YAML files),
the registry of differences between the sources, and configuration -> model (``build``)."""
