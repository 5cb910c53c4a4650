"""A sweep's results: its trials' statuses, the summary files, what the numbers mean (fidelity,
noise, the baseline), the Aim runs, and the multi-seed confirmation."""
