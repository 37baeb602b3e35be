// The weight_grad entry point of gates_avx512.cpp as convlstm_weight_grad, for the library built at
// install time (setup.py); simd.py loads it, or builds gates_avx512.cpp at run time.
#define CONVLSTM_WEIGHT_GRAD 1
#define kernel convlstm_weight_grad
#include "gates_avx512.cpp"
