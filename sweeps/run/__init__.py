"""Running a sweep: the spec, the Tune plumbing, the trial, the searcher, the scheduler and
the repairs ``--resume`` makes."""
