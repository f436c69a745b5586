# Included by the kernel modules built per instruction set (see lpmon_isa.h).
# Each module defines cdef `_kernels`, `_isa` and `_table_for(isa)` first.

def available_isas():
    """The instruction sets this CPU runs and this build contains, lowest first."""
    return isa.ISAS[: lp_best_isa() + 1]


def current_isa():
    """The instruction set whose kernels are in use."""
    return isa.ISAS[_isa]


def use_isa(name=None):
    """Switch to ISA `name` (default: LPMON_ISA, else the best available). For tests and benchmarks."""
    global _kernels, _isa
    _isa = isa.resolve(name, lp_best_isa())
    _kernels = _table_for(_isa)
    return isa.ISAS[_isa]


use_isa()
