"""The control channel between API processes and gateway workers."""
