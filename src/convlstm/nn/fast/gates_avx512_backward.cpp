// The backward entry point of gates_avx512.cpp as convlstm_backward, for the library built at
// install time (setup.py); simd.py loads it, or builds gates_avx512.cpp at run time.
#define CONVLSTM_BACKWARD 1
#define kernel convlstm_backward
#include "gates_avx512.cpp"
