"""What every running process needs: config, metrics, health, logs, progress."""
