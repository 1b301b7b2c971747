"""Frozen backbones: presets as JSON data, spec parsing, offline-first loading, fingerprints."""

from biomedvr_cli.backbones.presets import Preset, load_presets
from biomedvr_cli.backbones.specs import BackboneSpec, parse_backbone

__all__ = ["Backbone", "BackboneSpec", "Preset", "load_backbone", "load_presets", "parse_backbone"]


def __getattr__(name: str):  # torch is imported only when a loader is actually needed
    if name in ("Backbone", "load_backbone", "describe_availability", "allow_download_default"):
        from biomedvr_cli.backbones import loader

        return getattr(loader, name)
    raise AttributeError(name)
