"""circhub: circhub."""

import pandas as _pandas

# pandas 3 keeps text in its `str` type, backed by pyarrow wherever pyarrow is installed, and
# by Python strings otherwise. pyarrow is here for the backfill's Arrow reader
# (connections.arrow_read); every other stage was built and measured on Python strings, so
# they stay the storage until a stage is moved and measured on pyarrow's.
_pandas.set_option("mode.string_storage", "python")
