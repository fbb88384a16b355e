"""The DVC stages: thin scripts, run as ``python -m stages.<name>`` from the project root."""

# Before any stage module loads numpy: pin the BLAS and SIMD code paths, one BLAS thread
# (evomlp.numerics), so the same params give the same bytes on every x86-64 CPU and core count.
from evomlp import numerics

numerics.one_blas_thread_per_process()
