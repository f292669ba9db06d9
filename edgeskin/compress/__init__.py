"""`edgeskin compress`: pruning and INT8 quantization-aware training (NNCF), stage by stage."""

import logging
import os

# NNCF compiles a small C++ extension on first use; on a slow machine its default 60 s limit
# aborts the build. 0 disables the limit (NNCF falls back to torch ops if the build fails).
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
# torchao (imported by nncf.strip) warns at import about its CUDA-only kernels on CPU machines,
# and its enum registration trips a torch.compile deprecation notice; neither concerns edgeskin,
# so keep those lines out of the user's output.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
