"""Named checks, one function per requirement id of shared/spec/checklist.md (§2 G*, §9)."""

from __future__ import annotations

from harness.verify.checks import conf, dialog, generic, media, mix, refer
from harness.verify.checks.base import CheckFn

REGISTRY: dict[str, CheckFn] = {
    "G1": generic.g1, "G2": generic.g2, "G3": generic.g3, "G4": generic.g4, "G5": generic.g5, "G8": generic.g8,
    "CALL-1": dialog.call_1, "DLG-1": dialog.dlg_1, "ACK-1": dialog.ack_1,
    "HOLD-1": media.hold_1, "HOLD-2": media.hold_2, "MEDIA-1": media.media_1, "MEDIA-2": media.media_2,
    "MEDIA-3": mix.media_3, "MEDIA-4": mix.media_4, "MIX-1": mix.mix_1,
    "CONF-1": conf.conf_1, "CONF-2": conf.conf_2, "CONF-3": conf.conf_3, "CONF-4": conf.conf_4,
    "JOIN-1": conf.join_1, "JOIN-2": conf.join_2, "JOIN-3": conf.join_3,
    "REF-1": refer.ref_1, "REF-2": refer.ref_2, "REF-3": refer.ref_3, "REF-4": refer.ref_4,
    "REF-5": refer.ref_5, "REF-6": refer.ref_6,
    "NOT-1": refer.not_1, "NOT-2": refer.not_2, "NOT-3": refer.not_3, "NOT-4": refer.not_4,
    "NOT-5": refer.not_5, "NOT-6": refer.not_6, "BYE-1": refer.bye_1,
}

__all__ = ["REGISTRY", "CheckFn"]
