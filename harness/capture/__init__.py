"""capture layer (see docs/interfaces.md): dumpcap lifecycle."""

from harness.capture.dumpcap import Capture, CaptureError, ToolMissing, require_tools, settle

__all__ = ["Capture", "CaptureError", "ToolMissing", "require_tools", "settle"]
