"""`edgeskin compress`: pruning and INT8 quantization-aware training (NNCF), stage by stage."""

import os

# NNCF compiles a small C++ extension on first use; on a slow machine its default 60 s limit
# aborts the build. 0 disables the limit (NNCF falls back to torch ops if the build fails).
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
