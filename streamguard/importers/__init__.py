"""Importers that turn third-party checkpoints into StreamGuard ONNX models.

Nothing here is imported by the runtime: the importers need torch (the ``dev``
extra), the runtime needs only ONNX Runtime. Import the submodules explicitly,
e.g. ``from streamguard.importers.aasist import import_aasist``; this package
file deliberately imports nothing so that ``import streamguard.importers``
stays cheap and torch-free.
"""
