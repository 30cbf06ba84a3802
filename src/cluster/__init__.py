"""Trials scheduled on a Ray cluster (`python -m src.sweep`): the grid a sweep expands, and what one trial
runs on whichever node has room. Nothing here is a stage's dependency: it schedules stages, it computes
no output of theirs."""
