"""The sweep report: one self-contained HTML page (with its CSV/JSON/PNG files) comparing a
sweep's trials and training runs. Reads a sweep folder's files; never starts Ray."""
