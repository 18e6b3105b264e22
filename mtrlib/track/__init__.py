"""Outside trackers that record our runs too (MLflow).

- `hook`: the hook `mtrlib.runs.writer.recorded_training` asks for a tracker (light: no
  tracker, nothing happens);
- `flags`: `--mlflow [URI]` and the context that switches tracking on for a command;
- `mlflow_tracker`: the MLflow tracker (needs the optional `mlflow` extra; imported only when
  tracking is switched on).
"""
