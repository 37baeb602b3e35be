// The transpose entry point of gates_avx512.cpp as convlstm_transpose, for the library built at
// install time (setup.py); simd.py loads it, or builds gates_avx512.cpp at run time.
#define CONVLSTM_TRANSPOSE 1
#define kernel convlstm_transpose
#include "gates_avx512.cpp"
