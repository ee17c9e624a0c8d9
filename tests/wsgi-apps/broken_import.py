"""An app whose import fails: the host must refuse to boot."""

raise ValueError("this module is broken on purpose")
