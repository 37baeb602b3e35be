// The AVX2 library of gates_simd.cpp's loops, built at install time (setup.py).
#define CONVLSTM_LIBRARY 1
#define CONVLSTM_AVX2 1
#include "gates_simd.cpp"
