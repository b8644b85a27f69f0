"""The converters' registry: one per scorer name, registered by the module that defines it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Converter:
    kind: str  # the scorer its questions are for
    sources: str  # what to pass, in words (the --help and the docs)
    fn: Callable[..., Iterator[dict]]
    embedded_images: bool = False  # writes images to the image folder


CONVERTERS: dict[str, Converter] = {}


def converter(kind: str, sources: str, embedded_images: bool = False):
    def register(fn):
        CONVERTERS[kind] = Converter(kind, sources, fn, embedded_images)
        return fn
    return register


class ConversionError(UsageError):
    """A release that is not in the layout its converter reads: which file, which line, what is wrong."""
