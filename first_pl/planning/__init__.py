"""Memory planning without a GPU: the paper's models on the meta device under the FSDP config.

`first-pl plan` (first_pl/commands/plan.py) prints, for each training stage of an experiment,
what one GPU holds, so a Table-1 setting can be checked against 48 GB or 80 GB cards before any
is rented.
"""
