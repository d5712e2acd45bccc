"""The kept-decode format: the pixels of ingest's strict JPEG decode, kept for split.

Ingest decodes every JPEG it copies as is (libjpeg-turbo, strict) to validate it. The
pixels of that decode, at the smallest DCT scale M/8 with both sides at least
:data:`DECODED_MIN_SIDE` (or full size), are packed as raw uint8 HxWx3 into
``decoded/pixels-CCCCC[-P].bin`` files (:func:`cnnzoo.storage.layout.decoded_file`) and
recorded on the image's manifest entry as ``"decoded": {"file", "offset", "width",
"height", "min_side", "sha256"}``. Split resizes those pixels instead of decoding the
JPEG again whenever its ``img_size`` is at most ``min_side``.
"""

from __future__ import annotations

#: A JPEG's kept decode has both sides at least this (or is full size): the split step
#: resizes it for any ``img_size`` up to this, the ``full`` profile's 100 px.
DECODED_MIN_SIDE = 100
#: The keys of a manifest entry's ``"decoded"`` record.
DECODED_KEYS = ("file", "offset", "width", "height", "min_side", "sha256")
