"""glibc allocator settings for web workers, so that memory freed after a large request returns to the system.

glibc serves an allocation at or above the mmap threshold (128 KiB at start) from its own
mapping, which returns to the system when freed. When such a block is freed, glibc raises the
threshold to that block's size, up to 32 MiB on 64-bit systems, and the heap trim threshold to
twice the new threshold (mallopt(3), "M_MMAP_THRESHOLD"). The buffers of a 1,000-expense batch
then stay in the worker's heaps after the response.

Measured on gunicorn's 2 sync workers serving the purchase-card model, after single and batch
predictions: 266 to 271 MB of VmRSS per worker with glibc's defaults, and 257 to 258 MB with
fixed thresholds. In-process prediction CPU stayed within its run-to-run spread.

A threshold set with mallopt() turns the adjustment off, as the MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ environment variables do, without depending on how the process starts.
"""

import ctypes
import logging

logger = logging.getLogger(__name__)

# mallopt() parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's starting values of both thresholds, in bytes. Setting them fixes them at these values.
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024


def fix_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; return False without glibc's mallopt.

    Memory allocated before the call is not moved, so call it before the application is imported.
    """
    # CDLL(None) opens the symbols of the running process, which include its C library.
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False

    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt() returns 1 on success and 0 on error.
    mmap_fixed = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_fixed = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not (mmap_fixed and trim_fixed):
        logger.warning(
            "mallopt() failed to fix the malloc thresholds, so freed memory may stay in this worker's heap",
            extra={"mmap_threshold_fixed": mmap_fixed, "trim_threshold_fixed": trim_fixed},
        )
        return False
    return True
