import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from evomlp.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
a = np.ones((50, 4097))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):
    b = a * 2.0          # 1.6 MB allocated and freed, as a generation does
    c = b + a
    del b, c
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_freed_generation_arrays_are_reused_instead_of_faulted_in_again():
    def faults(mode):
        output = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        kept, count = output.stdout.split()
        return kept == "True", int(count)

    kept, with_keep = faults("keep")
    _, without = faults("default")
    assert kept
    # 300 x 2 arrays of 400 pages each would be ~240,000 faults if every one came fresh from the OS
    assert with_keep < 5_000 < without
