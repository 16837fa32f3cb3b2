"""corral: a self-hostable data platform for media that lives in your own buckets."""

from corral._version import __version__

__all__ = ["__version__"]
