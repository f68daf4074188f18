"""first_pl: FIRST (efficient trustworthy distillation) on PyTorch Lightning."""

from first_pl import _renamed

__version__ = "0.1.0"

_renamed.install()
