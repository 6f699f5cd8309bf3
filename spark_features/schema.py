"""The event contract as Spark sees it: field names, reasons, the raw read schema (devices:
edge_nodes/devices.py)."""

from __future__ import annotations

from pyspark.sql.types import StringType, StructField, StructType

# DESIGN.md's event; edge_id is optional in a line (the log's folder names the edge).
EVENT_FIELDS = ("user_id", "device", "content_id", "duration", "timestamp", "edge_id")
REQUIRED_FIELDS = ("user_id", "device", "content_id", "duration", "timestamp")
TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss"
CORRUPT_COLUMN = "_corrupt_record"

# Why a row was rejected, checked in this order (a row gets the first that applies).
REASONS = (
    "unparseable",        # not a JSON object
    "missing_field",      # a required field absent, null or empty
    "bad_timestamp",      # not "YYYY-MM-DD HH:MM:SS"
    "bad_duration",       # not a number
    "negative_duration",
    "absurd_duration",    # above features.max_duration_min, or not finite
    "unknown_device",
    "unknown_content",    # content_id not in the catalog
    "edge_mismatch",      # the line's edge_id differs from its log folder
    "duplicate",          # an exact copy of an earlier valid row (the first copy is kept)
)

# Every field is read as a string so one bad value flags its row instead of failing the parse;
# values are then converted with try_* functions (see validate.py).
RAW_SCHEMA = StructType(
    [StructField(name, StringType(), True) for name in EVENT_FIELDS]
    + [StructField(CORRUPT_COLUMN, StringType(), True)]
)
