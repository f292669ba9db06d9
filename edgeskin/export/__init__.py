"""`edgeskin export`: self-describing artifacts with a CAM output, each validated after export."""

from edgeskin.export.pipeline import ExportResult, export  # noqa: F401
