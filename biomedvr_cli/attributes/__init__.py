"""Attribute sentences per class (descriptive, distinctive, confusion-aware): format, LLM, cache.

The public surface that ``fit`` and the CLI use::

    from biomedvr_cli.attributes import AttributeFile, load_attributes, read_class_list

Importing this package is cheap: the ``anthropic`` SDK is only imported when a request
is actually sent (``provider.make_client``).

Modules: ``schema`` (the file format and its validation), ``classlist`` (classes.txt),
``privacy`` (the guard on what leaves the machine), ``prompts`` (versioned templates),
``provider`` (SDK clients and error mapping), ``cache``, ``generate`` (the run) and
``importer`` (the reference implementation's files).
"""

from __future__ import annotations

from biomedvr_cli.attributes.classlist import read_class_list
from biomedvr_cli.attributes.schema import (
    MIN_SENTENCE_CHARS,
    SCHEMA_VERSION,
    SET_NAMES,
    AttributeFile,
    ClassAttributes,
    load_attributes,
    save_attributes,
    validate_attributes,
)

__all__ = [
    "MIN_SENTENCE_CHARS",
    "SCHEMA_VERSION",
    "SET_NAMES",
    "AttributeFile",
    "ClassAttributes",
    "load_attributes",
    "read_class_list",
    "save_attributes",
    "validate_attributes",
]
