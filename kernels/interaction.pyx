"""Compiled core of lpmon.model.interaction: DLRM's pairwise dot interaction, each
dot product of float32 vectors rounded once, to the float32 nearest its exact value.

The C loops (interaction_body.h) are built once per instruction set and chosen at
import, like the other per-ISA kernels. Validation happens in lpmon.model.interaction.
"""

import numpy as np

from lpmon._kernels import isa

from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


cdef extern from "interaction_dispatch.h" nogil:
    ctypedef int64_t (*lp_dot_interaction_fn)(const float * const *, int64_t, int64_t, int64_t,
                                              int64_t, float *, int64_t)
    ctypedef struct lp_interaction_kernels:
        lp_dot_interaction_fn dot_interaction
    int lp_best_isa()
    lp_interaction_kernels lp_interaction_kernels_for(int isa)


cdef lp_interaction_kernels _kernels
cdef int _isa = -1


cdef lp_interaction_kernels _table_for(int index):
    return lp_interaction_kernels_for(index)


include "isa_select.pxi"


# Threads are opt-in: with n_threads=1 no OpenMP region is entered at all (see logloss.pyx).

def dot_interaction(list parts, float[:, ::1] out, int n_threads=1):
    """out[:, :d] = parts[0]; out[:, d:] = dot(parts[i], parts[j]) for i > j (np.tril_indices(V, k=-1)'s
    order), each the float32 nearest the exact dot product. parts: V float32 [rows, d] arrays, C order,
    rows >= 1 and d >= 1; returns how many pairs needed the exact path."""
    cdef int64_t n_parts = len(parts), rows = out.shape[0], out_cols = out.shape[1], v, d, c
    cdef int64_t n_chunks = max(1, min(n_threads, rows)), exact = 0, done
    cdef const float[:, ::1] part
    cdef const float **pointers = <const float **>malloc(n_parts * sizeof(float *))
    if pointers == NULL:
        raise MemoryError()
    cdef lp_interaction_kernels k = _kernels
    try:
        for v in range(n_parts):
            part = parts[v]
            pointers[v] = &part[0, 0]
        d = parts[0].shape[1]
        if n_chunks == 1:
            with nogil:
                exact = k.dot_interaction(pointers, n_parts, d, 0, rows, &out[0, 0], out_cols)
        else:
            for c in prange(n_chunks, nogil=True, num_threads=n_chunks, schedule="static"):
                done = k.dot_interaction(pointers, n_parts, d, c * rows // n_chunks,
                                         (c + 1) * rows // n_chunks, &out[0, 0], out_cols)
                exact += done if done >= 0 else rows * n_parts * n_parts
    finally:
        free(pointers)
    if exact < 0 or exact >= rows * n_parts * n_parts:
        raise MemoryError("no scratch memory for the dot interaction")
    return exact
