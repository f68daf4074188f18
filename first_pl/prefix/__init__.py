"""A frozen prefix shared by teacher and students (`model.prefix_layers`): its hidden states are
computed once per sequence and the models train and run only the layers above it."""

from first_pl.prefix.frozen import FrozenPrefix, sequence_key
from first_pl.prefix.split import (
    PREFIX_ATTR,
    PrefixSettingsError,
    join_prefix,
    prefix_of,
    split_prefix,
)

__all__ = [
    "PREFIX_ATTR",
    "FrozenPrefix",
    "PrefixSettingsError",
    "join_prefix",
    "prefix_of",
    "sequence_key",
    "split_prefix",
]
