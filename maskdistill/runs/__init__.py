"""What every job leaves on disk: the run folder (never clobbered silently, resumed only with the
same config), atomic checkpoints (safetensors + JSON) and the metrics (CSV and TensorBoard)."""
