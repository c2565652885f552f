"""Data sets: bundled digits, linear teacher-student tasks, and MNIST / CIFAR read from local files."""

from .files import *  # noqa: F403
from .files import DEFAULT_ROOT, IDX_DTYPES, LUMA, NORMALIZATIONS, SOURCES, __all__  # noqa: F401
