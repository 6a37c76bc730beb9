"""Dataset readers: MNIST IDX files, CIFAR-10 pickles, image folders / zips, sklearn digits,
the fine-grained CUB-200-2011 and Stanford Dogs.

Every reader returns a :class:`DatasetSplits` of two :class:`ImageArray` (train = retrieval
database, test = queries); :func:`load_dataset` picks the reader by name.
"""

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.data.cache import cached, default_cache_dir
from hashret.data.cifar import download_cifar10, read_cifar10
from hashret.data.cub import read_cub200
from hashret.data.digits import read_digits
from hashret.data.dogs import read_dogs
from hashret.data.folder import read_image_folder
from hashret.data.image import BadImageError, read_image
from hashret.data.mnist import download_mnist, read_mnist
from hashret.data.registry import DATASETS, DatasetSpec, list_datasets, load_dataset, register_dataset
from hashret.data.splits import stratified_split

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "list_datasets",
    "register_dataset",
    "BadImageError",
    "DatasetSplits",
    "ImageArray",
    "cached",
    "default_cache_dir",
    "download_cifar10",
    "download_mnist",
    "load_dataset",
    "read_cifar10",
    "read_cub200",
    "read_digits",
    "read_dogs",
    "read_image",
    "read_image_folder",
    "read_mnist",
    "stratified_split",
]
